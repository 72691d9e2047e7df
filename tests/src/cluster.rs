//! Multi-node clusters for end-to-end tests: real `skein agent` processes,
//! each in its own **network namespace**, so a test can kill a node, kill the
//! leader, or cut a node off the network while its process keeps running.
//!
//! # Topology
//!
//! A [`Cluster`] gets a private bridge `skb<k>` with the subnet
//! `10.211.<k>.0/24`; the host (the test process) is `10.211.<k>.1` on it.
//! Node `i` lives in the namespace `skn<k>-<i>`, wired to the bridge by a
//! veth pair (`skv<k>-<i>` on the host, `eth0` = `10.211.<k>.<10+i>/24` inside,
//! default route via `.1`). `k` comes from a lock-protected allocator
//! ([`NetSlot`], an `flock` per slot under `/run/skein-e2e/nets`) so parallel
//! test processes never collide; every name fits Linux's 15-character limit.
//!
//! Node `i` runs `ip netns exec skn<k>-<i> skein agent --data-dir … --api
//! <ip>:7420 --port-range … --name node<i> --mesh <ip>:7421 --advertise <ip>
//! --cluster-key <shared key> [--join <ip of node0>:7421] [--label k=v]…
//! <extra args>`. Node 0 bootstraps; the others join node 0 only. `ip netns
//! exec` execs the agent, so `PR_SET_PDEATHSIG` (see the crate docs) still
//! kills it when the test process dies. Docker is shared: every node talks to
//! the host's daemon over its unix socket, containers carry `skein.node=<id>`,
//! and every node has its own `--port-range`.
//!
//! The test process reaches every node's API directly (`10.211.<k>.<10+i>:7420`
//! is on-link through the bridge), and so does the CLI ([`Agent::cli`]).
//!
//! # Firewall
//!
//! With `br_netfilter` loaded (`net.bridge.bridge-nf-call-iptables = 1`, as on
//! hosts running Docker), frames crossing a bridge traverse the iptables
//! `FORWARD` chain, whose policy Docker sets to `DROP`: namespaces on the same
//! bridge could not talk to each other. [`Bridge::create`] therefore inserts
//! `-I FORWARD -i skb<k> -o skb<k> -j ACCEPT` into every iptables backend
//! (`iptables`, `iptables-legacy`) whose `FORWARD` chain drops, and removes it
//! again on drop. Nothing global (sysctls, Docker's chains) is changed.
//!
//! # Partitions
//!
//! [`Netns::partition`] installs, inside the node's namespace, `INPUT`/`OUTPUT`
//! rules dropping everything on `eth0` except traffic with the host (`.1`): the
//! node reaches no other node and no node reaches it (in either direction,
//! established connections included), while its process keeps running, Docker
//! (a unix socket) keeps working, and the test can still query its API. If
//! iptables is unusable inside namespaces it falls back to `ip link set eth0
//! down` (then the API is unreachable too; see [`Netns::partition_mode`]).
//!
//! # Clean-up
//!
//! Dropping a [`Cluster`] (also when the test panicked) kills all its agents,
//! removes their containers, and deletes the namespaces, veths, bridge and
//! iptables rules. Leftovers of test processes that died without unwinding
//! (SIGKILL) are removed by [`cleanup_stale_netns`], which the first
//! [`Bridge::create`] of every test process runs: it only touches slots whose
//! lock no live process holds.
//!
//! # Concurrency
//!
//! At most `$SKEIN_E2E_MAX_CLUSTERS` (default [`DEFAULT_MAX_CLUSTERS`])
//! clusters exist at once on the machine, over all test processes:
//! [`Cluster::start`] waits for a permit (an `flock`) that the cluster holds
//! until dropped. So a test must not hold more clusters than that at once.
//! Clusters of a stand-in binary ([`ClusterOpts::bin`]) need no permit.
//!
//! Everything here needs root and iproute2 (`ip netns`); [`Cluster::start`]
//! and [`Bridge::create`] panic with a clear message otherwise.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Read;
use std::net::Ipv4Addr;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{
    containers_with_labels, poll_until_ok, run_with_timeout, skein_bin, try_run_with_timeout,
    Agent, AgentOpts, CliOutput,
};

/// Port of every node's HTTP API inside its namespace.
pub const API_PORT: u16 = 7420;
/// Port of every node's libp2p mesh inside its namespace.
pub const MESH_PORT: u16 = 7421;
/// The first two octets of every test subnet (`10.211.<k>.0/24`).
pub const SUBNET_PREFIX: [u8; 2] = [10, 211];
/// Highest slot `k` handed out (slots are `1..=MAX_SLOT`).
pub const MAX_SLOT: u8 = 250;
/// Node `i` gets host number `FIRST_NODE_HOST + i` in its subnet.
pub const FIRST_NODE_HOST: u8 = 10;

/// Limit for one `ip` / `iptables` command.
const NET_COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit for one HTTP status request or CLI call made while polling.
const POLL_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Default for `$SKEIN_E2E_MAX_CLUSTERS`: how many [`Cluster`]s may exist at
/// once on this machine, over all test processes.
pub const DEFAULT_MAX_CLUSTERS: usize = 2;
/// Longest wait for a cluster permit before giving up.
const PERMIT_WAIT: Duration = Duration::from_secs(900);

/// Directory of the slot locks (root-only resources, so a root-only place;
/// `/run` is a tmpfs, emptied at boot like the namespaces themselves).
const SLOT_LOCK_DIR: &str = "/run/skein-e2e/nets";

// ---------------------------------------------------------------------------
// Commands
// ---------------------------------------------------------------------------

/// Runs `program args…` (at most 30 s); `Ok(stdout)` or `Err` with its stderr.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let mut c = Command::new(program);
    c.args(args);
    match try_run_with_timeout(&mut c, NET_COMMAND_TIMEOUT) {
        Ok(o) if o.success() => Ok(o.stdout),
        Ok(o) => Err(format!(
            "`{}` failed ({}): {}",
            o.command,
            o.status,
            o.stderr.trim()
        )),
        Err(o) => Err(format!("`{}` timed out: {}", o.command, o.stderr.trim())),
    }
}

/// `ip args…`, panicking with its stderr on failure.
#[track_caller]
fn ip(args: &[&str]) -> String {
    run("ip", args).unwrap_or_else(|e| panic!("{e}"))
}

/// Best-effort command for clean-up paths: failures are printed, not raised.
fn best_effort(program: &str, args: &[&str]) {
    if let Err(e) = run(program, args) {
        eprintln!("skein-e2e: clean-up: {e}");
    }
}

fn command_exists(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok()
}

/// Panics with an explanation unless this process is root and `ip netns` works.
#[track_caller]
pub fn require_netns_support() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert!(
        euid == 0,
        "multi-node tests create network namespaces, a bridge and iptables rules and \
         need root (running as uid {euid}); run them as root (CI does)"
    );
    if !command_exists("ip") {
        panic!(
            "multi-node tests need iproute2 (`ip netns`), and `ip` is not installed: \
             `apt-get install iproute2`"
        );
    }
    if let Err(e) = run("ip", &["netns", "list"]) {
        panic!(
            "multi-node tests need iproute2 with network namespace support \
             (`ip netns`): {e}; install it with `apt-get install iproute2`"
        );
    }
}

// ---------------------------------------------------------------------------
// Subnet slots
// ---------------------------------------------------------------------------

/// An exclusive reservation of slot `k`: the bridge `skb<k>`, the subnet
/// `10.211.<k>.0/24`, the namespaces `skn<k>-*` and veths `skv<k>-*`.
///
/// Exclusive across threads and processes while the value lives (an `flock`
/// on `/run/skein-e2e/nets/<k>.lock`); a process that dies releases it, which
/// is how [`cleanup_stale_netns`] tells leftovers from live networks.
#[derive(Debug)]
pub struct NetSlot {
    k: u8,
    _lock: File,
}

impl NetSlot {
    /// The slot number `k`.
    pub fn k(&self) -> u8 {
        self.k
    }
}

fn lock_dir() -> PathBuf {
    let dir = PathBuf::from(SLOT_LOCK_DIR);
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// Takes the lock of slot `k` without waiting; `None` if a live process holds it.
fn try_lock_slot(k: u8) -> Option<File> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(lock_dir().join(format!("{k}.lock")))
        .ok()?;
    // SAFETY: flock on a file descriptor we own.
    (unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0).then_some(f)
}

/// Whether a live process holds slot `k` (its network is in use, not stale).
pub fn slot_is_held(k: u8) -> bool {
    try_lock_slot(k).is_none()
}

/// Whether anything outside our naming scheme uses `10.211.<k>.x` (an address
/// or a route), e.g. a VPN or another tool's bridge.
fn subnet_in_use(k: u8) -> bool {
    let needle = format!("{}.{}.{k}.", SUBNET_PREFIX[0], SUBNET_PREFIX[1]);
    let addrs = run("ip", &["-4", "-o", "addr", "show"]).unwrap_or_default();
    let routes = run("ip", &["-4", "route", "show", "table", "all"]).unwrap_or_default();
    addrs.contains(&needle) || routes.contains(&needle)
}

/// Reserves a free slot (see [`NetSlot`]), removing leftovers of dead runs in
/// the slot it takes.
///
/// # Panics
///
/// When all [`MAX_SLOT`] slots are taken.
pub fn reserve_net_slot() -> NetSlot {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = MAX_SLOT as usize;
    let start = (std::process::id() as usize)
        .wrapping_mul(31)
        .wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed) as usize * 7);
    for i in 0..n {
        let k = (1 + (start + i) % n) as u8;
        let Some(lock) = try_lock_slot(k) else {
            continue;
        };
        clean_slot(k);
        if subnet_in_use(k) {
            continue;
        }
        return NetSlot { k, _lock: lock };
    }
    panic!("no free test network slot (skb1..skb{MAX_SLOT} all in use)");
}

/// Waits for one of `$SKEIN_E2E_MAX_CLUSTERS` (default
/// [`DEFAULT_MAX_CLUSTERS`]) machine-wide permits, an `flock` held for the
/// cluster's life. Clusters are heavy (several agents with second-scale
/// failure detectors, all on the same cores and Docker daemon); running more
/// at once on a small machine turns timing assertions into noise. Tests
/// that run several agents without a [`Cluster`] take one too.
pub fn acquire_cluster_permit() -> File {
    let max = std::env::var("SKEIN_E2E_MAX_CLUSTERS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_MAX_CLUSTERS)
        .max(1);
    let dir = Path::new(SLOT_LOCK_DIR).with_file_name("clusters");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    let start = Instant::now();
    let mut noted = false;
    loop {
        for j in 0..max {
            let Ok(f) = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(dir.join(format!("{j}.lock")))
            else {
                continue;
            };
            // SAFETY: flock on a file descriptor we own.
            if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                if noted {
                    eprintln!(
                        "skein-e2e: got a cluster permit after {:.1?}",
                        start.elapsed()
                    );
                }
                return f;
            }
        }
        if !noted && start.elapsed() > Duration::from_secs(1) {
            eprintln!(
                "skein-e2e: waiting for one of {max} cluster permits \
                 (SKEIN_E2E_MAX_CLUSTERS) held by other tests"
            );
            noted = true;
        }
        assert!(
            start.elapsed() < PERMIT_WAIT,
            "no cluster permit after {PERMIT_WAIT:?} (SKEIN_E2E_MAX_CLUSTERS={max})"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

// ---------------------------------------------------------------------------
// Stale clean-up
// ---------------------------------------------------------------------------

/// `skn<k>-<i>` → `k`.
fn netns_slot(name: &str) -> Option<u8> {
    let (k, i) = name.strip_prefix("skn")?.split_once('-')?;
    i.parse::<u32>().ok()?;
    k.parse().ok()
}

/// `skb<k>` → `k`, `skv<k>-<i>` → `k`.
fn link_slot(name: &str) -> Option<u8> {
    if let Some(k) = name.strip_prefix("skb") {
        return k.parse().ok();
    }
    let (k, i) = name.strip_prefix("skv")?.split_once('-')?;
    i.parse::<u32>().ok()?;
    k.parse().ok()
}

fn netns_names() -> Vec<String> {
    run("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn link_names() -> Vec<String> {
    // "346: skv5-0@if2: <BROADCAST,…> …"
    run("ip", &["-o", "link", "show"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let name = l.split(": ").nth(1)?;
            Some(name.split('@').next().unwrap_or(name).to_string())
        })
        .collect()
}

/// The iptables backends installed (`iptables`, `iptables-legacy`).
fn iptables_backends() -> &'static [&'static str] {
    static B: OnceLock<Vec<&'static str>> = OnceLock::new();
    B.get_or_init(|| {
        ["iptables", "iptables-legacy"]
            .into_iter()
            .filter(|b| command_exists(b))
            .collect()
    })
}

/// `FORWARD` rules of `backend` that mention bridge `skb<k>`, as `-S` lines.
fn forward_rules(backend: &str) -> Vec<String> {
    run(backend, &["-w", "10", "-S", "FORWARD"])
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn rule_slot(rule: &str) -> Option<u8> {
    let mut it = rule.split_whitespace();
    while let Some(w) = it.next() {
        if w == "-i" {
            return it.next().and_then(|n| n.strip_prefix("skb")?.parse().ok());
        }
    }
    None
}

/// Deletes everything of slot `k`: namespaces, veths, bridge, iptables rules.
/// The caller holds the slot's lock.
fn clean_slot(k: u8) -> usize {
    let mut n = 0;
    for name in link_names() {
        if link_slot(&name) == Some(k) && name.starts_with("skv") {
            best_effort("ip", &["link", "del", &name]);
            n += 1;
        }
    }
    for name in netns_names() {
        if netns_slot(&name) == Some(k) {
            best_effort("ip", &["netns", "del", &name]);
            n += 1;
        }
    }
    for name in link_names() {
        if link_slot(&name) == Some(k) {
            best_effort("ip", &["link", "del", &name]);
            n += 1;
        }
    }
    for backend in iptables_backends() {
        for rule in forward_rules(backend) {
            if rule_slot(&rule) == Some(k) {
                if let Some(spec) = rule.strip_prefix("-A ") {
                    let mut args = vec!["-w", "10", "-D"];
                    args.extend(spec.split_whitespace());
                    best_effort(backend, &args);
                    n += 1;
                }
            }
        }
    }
    n
}

/// Removes the namespaces `skn*`, veths `skv*`, bridges `skb*` and their
/// iptables rules left behind by test processes that died without cleaning
/// up (SIGKILL, abort). Slots held by a live process (its lock) are left
/// alone, so this is safe while other tests run. Returns how many objects
/// were removed.
///
/// The first [`Bridge::create`] of each test process calls it.
pub fn cleanup_stale_netns() -> usize {
    let mut slots = BTreeSet::new();
    slots.extend(netns_names().iter().filter_map(|n| netns_slot(n)));
    slots.extend(link_names().iter().filter_map(|n| link_slot(n)));
    for backend in iptables_backends() {
        slots.extend(forward_rules(backend).iter().filter_map(|r| rule_slot(r)));
    }
    let mut removed = 0;
    for k in slots {
        if let Some(_lock) = try_lock_slot(k) {
            let n = clean_slot(k);
            if n > 0 {
                eprintln!("skein-e2e: removed {n} leftover network object(s) of slot {k}");
            }
            removed += n;
        }
    }
    removed
}

// ---------------------------------------------------------------------------
// Bridge
// ---------------------------------------------------------------------------

/// A private bridge `skb<k>` with the host at `10.211.<k>.1/24` (see the
/// module docs), plus the iptables rules letting its ports talk to each other.
/// Dropping it removes the rules and the bridge, then releases the slot.
#[derive(Debug)]
pub struct Bridge {
    name: String,
    /// Backends in which the FORWARD ACCEPT rule was inserted.
    fw_backends: Vec<&'static str>,
    // Last: released after the clean-up.
    slot: NetSlot,
}

impl Bridge {
    /// Reserves a slot and creates the bridge.
    ///
    /// # Panics
    ///
    /// If not root, `ip` is missing, or a command fails (everything created
    /// so far is removed again).
    pub fn create() -> Bridge {
        require_netns_support();
        static CLEANUP: Once = Once::new();
        CLEANUP.call_once(|| {
            cleanup_stale_netns();
        });
        let slot = reserve_net_slot();
        let mut b = Bridge {
            name: format!("skb{}", slot.k),
            fw_backends: Vec::new(),
            slot,
        };
        ip(&["link", "add", &b.name, "type", "bridge"]);
        let host = format!("{}/24", b.host_ip());
        ip(&["addr", "add", &host, "dev", &b.name]);
        ip(&["link", "set", &b.name, "up"]);
        b.allow_forwarding();
        b
    }

    /// Inserts `FORWARD -i br -o br -j ACCEPT` where bridged frames would
    /// otherwise be dropped (see the module docs).
    fn allow_forwarding(&mut self) {
        let nf = fs::read_to_string("/proc/sys/net/bridge/bridge-nf-call-iptables")
            .map(|s| s.trim() == "1")
            .unwrap_or(false);
        if !nf {
            // br_netfilter not loaded (or disabled): bridged frames never see iptables.
            return;
        }
        for &backend in iptables_backends() {
            let rules = match run(backend, &["-w", "10", "-S", "FORWARD"]) {
                Ok(r) => r,
                Err(_) => continue,
            };
            let drops = rules.lines().any(|l| {
                l == "-P FORWARD DROP"
                    || l.contains(" -j DROP")
                    || l.contains(" -j REJECT")
                    || l.contains(" -j DOCKER")
            });
            if !drops {
                continue;
            }
            run(
                backend,
                &[
                    "-w", "10", "-I", "FORWARD", "1", "-i", &self.name, "-o", &self.name, "-j",
                    "ACCEPT",
                ],
            )
            .unwrap_or_else(|e| {
                panic!(
                    "cannot allow traffic across the test bridge {} \
                     (FORWARD drops bridged frames): {e}",
                    self.name
                )
            });
            self.fw_backends.push(backend);
        }
    }

    /// The bridge's name, `skb<k>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The slot number `k`.
    pub fn k(&self) -> u8 {
        self.slot.k
    }

    /// `10.211.<k>.0/24`.
    pub fn subnet(&self) -> String {
        format!("{}/24", self.ip(0))
    }

    /// `10.211.<k>.<host>`.
    pub fn ip(&self, host: u8) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET_PREFIX[0], SUBNET_PREFIX[1], self.slot.k, host)
    }

    /// The host's address on the bridge, `10.211.<k>.1` (the nodes' gateway).
    pub fn host_ip(&self) -> Ipv4Addr {
        self.ip(1)
    }

    /// Address of node `i`: `10.211.<k>.<10+i>`.
    pub fn node_ip(&self, i: usize) -> Ipv4Addr {
        let host = u8::try_from(i + FIRST_NODE_HOST as usize)
            .ok()
            .filter(|&h| h < 255)
            .unwrap_or_else(|| panic!("node index {i} too large for a /24"));
        self.ip(host)
    }

    /// The iptables backends in which a FORWARD rule was added (empty when
    /// bridged traffic is not filtered).
    pub fn firewall_backends(&self) -> &[&'static str] {
        &self.fw_backends
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        for backend in &self.fw_backends {
            best_effort(
                backend,
                &[
                    "-w", "10", "-D", "FORWARD", "-i", &self.name, "-o", &self.name, "-j", "ACCEPT",
                ],
            );
        }
        best_effort("ip", &["link", "del", &self.name]);
    }
}

// ---------------------------------------------------------------------------
// Network namespaces
// ---------------------------------------------------------------------------

/// How [`Netns::partition`] cut a namespace off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionMode {
    /// iptables rules inside the namespace drop all traffic except with the
    /// host: the test can still reach the node's API.
    Firewall,
    /// `eth0` is down: nothing reaches the node, not even the test.
    LinkDown,
}

/// A network namespace `skn<k>-<i>` attached to a [`Bridge`] (see the module
/// docs). Dropping it deletes the veth pair and the namespace. Drop it before
/// its bridge.
#[derive(Debug)]
pub struct Netns {
    name: String,
    veth: String,
    ip: Ipv4Addr,
    gateway: Ipv4Addr,
    partition: Option<PartitionMode>,
}

impl Netns {
    /// Creates namespace `skn<k>-<index>` with `eth0` = the bridge's
    /// [`Bridge::node_ip`]`(index)`, `lo` up and a default route via the host.
    ///
    /// # Panics
    ///
    /// If a command fails (what was created is removed again).
    pub fn create(bridge: &Bridge, index: usize) -> Netns {
        let k = bridge.k();
        let ns = Netns {
            name: format!("skn{k}-{index}"),
            veth: format!("skv{k}-{index}"),
            ip: bridge.node_ip(index),
            gateway: bridge.host_ip(),
            partition: None,
        };
        ip(&["netns", "add", &ns.name]);
        // From here on, a panic drops `ns`, which deletes what exists.
        ip(&[
            "link", "add", &ns.veth, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        ip(&["link", "set", &ns.veth, "master", bridge.name(), "up"]);
        let addr = format!("{}/24", ns.ip);
        ip(&["-n", &ns.name, "addr", "add", &addr, "dev", "eth0"]);
        ip(&["-n", &ns.name, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns.name, "link", "set", "lo", "up"]);
        let gw = ns.gateway.to_string();
        ip(&["-n", &ns.name, "route", "add", "default", "via", &gw]);
        ns
    }

    /// The namespace's name, `skn<k>-<i>`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The host-side veth, `skv<k>-<i>`.
    pub fn veth(&self) -> &str {
        &self.veth
    }

    /// The address of `eth0` inside.
    pub fn ip(&self) -> Ipv4Addr {
        self.ip
    }

    /// The host's address on the bridge (the default gateway inside).
    pub fn gateway(&self) -> Ipv4Addr {
        self.gateway
    }

    /// `ip netns exec <name> <program>`: a command to run inside.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).arg(program);
        c
    }

    /// Runs `program args…` inside (at most 30 s) and returns its output,
    /// whatever the status.
    pub fn exec(&self, program: &str, args: &[&str]) -> CliOutput {
        let mut c = self.command(program);
        c.args(args);
        run_with_timeout(&mut c, NET_COMMAND_TIMEOUT)
    }

    /// Runs `f` on a helper thread that has entered this namespace
    /// (`setns(CLONE_NEWNET)`) and returns its result. Sockets created by `f`
    /// belong to the namespace for their whole life, wherever they are used
    /// afterwards: e.g. `ns.enter(|| TcpStream::connect_timeout(…))` connects
    /// *from* the namespace, `ns.enter(|| TcpListener::bind(…))` listens in it.
    ///
    /// # Panics
    ///
    /// If the namespace cannot be entered, or `f` panics (re-raised).
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        let file = File::open(&path).unwrap_or_else(|e| panic!("cannot open {path}: {e}"));
        std::thread::scope(|s| {
            let h = s.spawn(|| {
                // SAFETY: setns on a namespace fd we own; it affects only this
                // helper thread, which ends right after `f`.
                if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    panic!("setns({path}): {}", std::io::Error::last_os_error());
                }
                f()
            });
            h.join().unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    fn iptables_in(&self, args: &[&str]) -> Result<String, String> {
        let mut a = vec!["netns", "exec", self.name.as_str(), "iptables", "-w", "10"];
        a.extend_from_slice(args);
        run("ip", &a)
    }

    fn partition_rules(&self) -> [Vec<String>; 2] {
        let gw = self.gateway.to_string();
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        [
            v(&["INPUT", "-i", "eth0", "!", "-s", &gw, "-j", "DROP"]),
            v(&["OUTPUT", "-o", "eth0", "!", "-d", &gw, "-j", "DROP"]),
        ]
    }

    /// Cuts the namespace off: from now on it reaches no other namespace and
    /// none reaches it, established connections included, while its
    /// processes keep running. The host stays reachable
    /// ([`PartitionMode::Firewall`]) unless iptables is unusable inside
    /// namespaces. No-op if already partitioned.
    ///
    /// # Panics
    ///
    /// If neither way works.
    pub fn partition(&mut self) {
        if self.partition.is_some() {
            return;
        }
        let [input, output] = self.partition_rules();
        let ins = |rule: &[String]| {
            let mut a = vec!["-I", rule[0].as_str(), "1"];
            a.extend(rule[1..].iter().map(String::as_str));
            self.iptables_in(&a)
        };
        let r = ins(&input).and_then(|_| ins(&output));
        match r {
            Ok(_) => self.partition = Some(PartitionMode::Firewall),
            Err(e) => {
                eprintln!(
                    "skein-e2e: iptables inside {} failed ({e}); partitioning with `link set eth0 down`",
                    self.name
                );
                let _ = self.iptables_in(&["-F"]);
                ip(&["-n", &self.name, "link", "set", "eth0", "down"]);
                self.partition = Some(PartitionMode::LinkDown);
            }
        }
    }

    /// Undoes [`Netns::partition`]. No-op if not partitioned.
    pub fn heal(&mut self) {
        match self.partition.take() {
            None => {}
            Some(PartitionMode::Firewall) => {
                for rule in self.partition_rules() {
                    let mut a = vec!["-D"];
                    a.extend(rule.iter().map(String::as_str));
                    self.iptables_in(&a).unwrap_or_else(|e| panic!("{e}"));
                }
            }
            Some(PartitionMode::LinkDown) => {
                ip(&["-n", &self.name, "link", "set", "eth0", "up"]);
                let gw = self.gateway.to_string();
                // Taking the link down removed the route.
                ip(&["-n", &self.name, "route", "replace", "default", "via", &gw]);
            }
        }
    }

    /// Whether [`Netns::partition`] is in effect.
    pub fn is_partitioned(&self) -> bool {
        self.partition.is_some()
    }

    /// How the current partition was made (`None` when not partitioned).
    pub fn partition_mode(&self) -> Option<PartitionMode> {
        self.partition
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Deleting the host end deletes the pair at once; deleting the
        // namespace alone would leave the veth until the kernel's
        // asynchronous namespace clean-up ran.
        if link_names().contains(&self.veth) {
            best_effort("ip", &["link", "del", &self.veth]);
        }
        best_effort("ip", &["netns", "del", &self.name]);
    }
}

// ---------------------------------------------------------------------------
// Cluster keys
// ---------------------------------------------------------------------------

/// Writes a fresh pre-shared cluster key to `path`: `skein keygen --out PATH`
/// with `bin` (default [`skein_bin`]); if that command fails (e.g. a binary
/// without `keygen`), the libp2p pnet format directly:
/// `/key/swarm/psk/1.0.0/\n/base16/\n<64 hex digits>\n`.
pub fn write_cluster_key(path: &Path, bin: Option<&Path>) {
    let bin = bin.map(Path::to_path_buf).unwrap_or_else(skein_bin);
    let mut c = Command::new(&bin);
    c.arg("keygen").arg("--out").arg(path);
    let ok = matches!(try_run_with_timeout(&mut c, Duration::from_secs(30)), Ok(o) if o.success())
        && fs::metadata(path).map(|m| m.len() > 0).unwrap_or(false);
    if ok {
        return;
    }
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    fs::write(path, format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n"))
        .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    let _ = fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
}

// ---------------------------------------------------------------------------
// Cluster
// ---------------------------------------------------------------------------

/// Options for [`Cluster::start`]; `ClusterOpts::default()` is a plain cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterOpts {
    /// `--label k=v` of node `i` (missing entries: no labels).
    pub labels_per_node: Vec<Vec<(String, String)>>,
    /// Appended to every node's arguments (e.g. fast failure detection).
    pub extra_args: Vec<String>,
    /// Extra environment of every agent (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// Binary to run instead of [`skein_bin`] (harness self-tests).
    pub bin: Option<PathBuf>,
    /// How long each agent may take to answer; default [`crate::AGENT_READY_TIMEOUT`].
    pub ready_timeout: Option<Duration>,
}

impl ClusterOpts {
    /// Adds arguments for every node.
    pub fn args(mut self, args: &[&str]) -> Self {
        self.extra_args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// Sets the labels of node `i`.
    pub fn labels(mut self, i: usize, labels: &[(&str, &str)]) -> Self {
        if self.labels_per_node.len() <= i {
            self.labels_per_node.resize(i + 1, Vec::new());
        }
        self.labels_per_node[i] = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self
    }

    /// Labels node `i` with `zone=<zones[i]>` (replacing its labels), for
    /// tests that pin work to a node by constraint.
    pub fn zones(mut self, zones: &[&str]) -> Self {
        for (i, z) in zones.iter().enumerate() {
            self = self.labels(i, &[("zone", z)]);
        }
        self
    }

    /// Sets an environment variable for every agent.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }
}

/// Options for one node added with [`Cluster::add_node`].
#[derive(Debug, Clone, Default)]
pub struct NodeOpts {
    /// `--label k=v`.
    pub labels: Vec<(String, String)>,
    /// Appended after the cluster's [`ClusterOpts::extra_args`].
    pub extra_args: Vec<String>,
    /// `--cluster-key`; default the cluster's shared key.
    pub key_file: Option<PathBuf>,
    /// `--join` addresses; `None`: node 0's mesh address; `Some(vec![])`: no
    /// `--join` (the node bootstraps its own cluster).
    pub join: Option<Vec<String>>,
}

/// Several `skein agent`s, each in its own network namespace on a private
/// bridge (see the module docs). Dropping it kills every agent, removes their
/// containers and deletes the network, also when the test panicked.
pub struct Cluster {
    // Drop order: agents (killed explicitly first), namespaces, bridge, files.
    agents: Vec<Agent>,
    nets: Vec<Netns>,
    bridge: Bridge,
    opts: ClusterOpts,
    key_file: PathBuf,
    dir: tempfile::TempDir,
    // Last: released once everything is cleaned up (`None` for stand-in
    // binaries, which are light).
    _permit: Option<File>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("bridge", &self.bridge.name)
            .field("nodes", &self.agents)
            .finish()
    }
}

/// An HTTP client with a short timeout, for polling statuses (a node that
/// stopped answering must not stall `leader()` for the default 30 s).
fn status_client() -> &'static ureq::Agent {
    static CLIENT: OnceLock<ureq::Agent> = OnceLock::new();
    CLIENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(3)))
            .max_redirects(0)
            .proxy(None)
            .build()
            .into()
    })
}

/// `GET http://<api>/v1/status` with a 3 s limit: the status JSON, or why not.
pub fn fetch_status(api: &str) -> Result<Value, String> {
    let url = format!("http://{api}/v1/status");
    let mut resp = status_client()
        .get(&url)
        .call()
        .map_err(|e| format!("GET {url}: {e}"))?;
    let code = resp.status().as_u16();
    let body = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| format!("GET {url}: reading body: {e}"))?;
    if code != 200 {
        return Err(format!("GET {url}: {code}: {body}"));
    }
    serde_json::from_str(&body).map_err(|e| format!("GET {url}: not JSON ({e}): {body}"))
}

impl Cluster {
    /// Creates the network and starts `n` nodes one after the other (node 0
    /// bootstraps, the others `--join` node 0), each waited for until its API
    /// answers. Does not wait for the nodes to see each other: use
    /// [`Cluster::wait_for_nodes`].
    ///
    /// # Panics
    ///
    /// If not root, `ip netns` is missing, or an agent does not come up
    /// (everything started is cleaned up).
    pub fn start(n: usize, opts: ClusterOpts) -> Cluster {
        assert!(n >= 1, "a cluster needs at least one node");
        require_netns_support();
        let permit = opts.bin.is_none().then(acquire_cluster_permit);
        let bridge = Bridge::create();
        let dir = tempfile::Builder::new()
            .prefix("skein-e2e-cluster-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let key_file = dir.path().join("cluster.key");
        write_cluster_key(&key_file, opts.bin.as_deref());
        let mut c = Cluster {
            agents: Vec::new(),
            nets: Vec::new(),
            bridge,
            opts,
            key_file,
            dir,
            _permit: permit,
        };
        for i in 0..n {
            let node = NodeOpts {
                labels: c.opts.labels_per_node.get(i).cloned().unwrap_or_default(),
                join: (i == 0).then(Vec::new),
                ..NodeOpts::default()
            };
            c.add_node(node);
        }
        c
    }

    /// Adds a node (next index, its own namespace), starts it and waits until
    /// its API answers; returns its index. Start it on the test's own thread
    /// (see the crate docs on `PR_SET_PDEATHSIG`).
    pub fn add_node(&mut self, node: NodeOpts) -> usize {
        let i = self.nets.len();
        assert_eq!(i, self.agents.len());
        self.nets.push(Netns::create(&self.bridge, i));
        let ip = self.bridge.node_ip(i);
        let key = node
            .key_file
            .clone()
            .unwrap_or_else(|| self.key_file.clone());
        let mut args: Vec<String> = vec![
            "--mesh".into(),
            format!("{ip}:{MESH_PORT}"),
            "--advertise".into(),
            ip.to_string(),
            "--cluster-key".into(),
            key.display().to_string(),
            // Services: each node answers DNS on its own address, and its
            // containers use it. All nodes share this host's Docker, whose
            // published ports live in the host's namespace: endpoints are
            // reached at the host's bridge address.
            "--dns".into(),
            format!("{ip}:53"),
            "--container-dns".into(),
            ip.to_string(),
            "--endpoint-ip".into(),
            self.bridge.host_ip().to_string(),
        ];
        let joins = node.join.clone().unwrap_or_else(|| vec![self.mesh_addr(0)]);
        for j in joins {
            args.push("--join".into());
            args.push(j);
        }
        args.extend(self.opts.extra_args.iter().cloned());
        args.extend(node.extra_args.iter().cloned());
        let opts = AgentOpts {
            name: Some(format!("node{i}")),
            labels: node.labels.clone(),
            extra_args: args,
            env: self.opts.env.clone(),
            bin: self.opts.bin.clone(),
            ready_timeout: self.opts.ready_timeout,
            api_listen: Some(format!("{ip}:{API_PORT}")),
            netns: Some(self.nets[i].name().to_string()),
            wrapper: Vec::new(),
            data_tmpfs: None,
        };
        // If this panics, the namespace is dropped with the cluster.
        self.agents.push(Agent::start(opts));
        i
    }

    /// Number of nodes (killed ones included).
    pub fn len(&self) -> usize {
        self.agents.len()
    }

    /// Whether the cluster has no node (never, after [`Cluster::start`]).
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
    }

    /// Node `i`.
    pub fn node(&self, i: usize) -> &Agent {
        &self.agents[i]
    }

    /// Node `i`, mutably.
    pub fn node_mut(&mut self, i: usize) -> &mut Agent {
        &mut self.agents[i]
    }

    /// The namespace of node `i`.
    pub fn netns(&self, i: usize) -> &Netns {
        &self.nets[i]
    }

    /// The bridge.
    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    /// The shared cluster key file.
    pub fn key_file(&self) -> &Path {
        &self.key_file
    }

    /// A directory for the test's own files, deleted with the cluster.
    pub fn scratch_dir(&self) -> &Path {
        self.dir.path()
    }

    /// Address of node `i`.
    pub fn ip(&self, i: usize) -> Ipv4Addr {
        self.bridge.node_ip(i)
    }

    /// Mesh address of node `i`, `<ip>:7421`.
    pub fn mesh_addr(&self, i: usize) -> String {
        format!("{}:{MESH_PORT}", self.bridge.node_ip(i))
    }

    /// Index of the node with this id.
    pub fn node_index(&self, id: &str) -> Option<usize> {
        self.agents.iter().position(|a| a.node_id() == id)
    }

    /// Whether node `i` runs and is not partitioned.
    pub fn is_live(&self, i: usize) -> bool {
        self.agents[i].pid().is_some() && !self.nets[i].is_partitioned()
    }

    /// Indexes of the live nodes ([`Cluster::is_live`]).
    pub fn live_nodes(&self) -> Vec<usize> {
        (0..self.len()).filter(|&i| self.is_live(i)).collect()
    }

    /// The first live node.
    ///
    /// # Panics
    ///
    /// If every node is killed or partitioned.
    #[track_caller]
    pub fn any_live(&self) -> &Agent {
        let i = *self
            .live_nodes()
            .first()
            .expect("no live node in the cluster");
        &self.agents[i]
    }

    /// SIGKILLs node `i` (no clean shutdown). Its containers keep running.
    pub fn kill(&mut self, i: usize) {
        self.agents[i].kill9();
    }

    /// Restarts node `i` on the same data dir, namespace, address and
    /// arguments (SIGKILLing it first if it runs) and waits until its API
    /// answers. Same thread rule as [`Cluster::add_node`].
    pub fn restart(&mut self, i: usize) {
        self.agents[i].restart();
    }

    /// Cuts node `i` off from every other node (see [`Netns::partition`]);
    /// its process and containers keep running.
    pub fn partition(&mut self, i: usize) {
        self.nets[i].partition();
    }

    /// Undoes [`Cluster::partition`].
    pub fn heal(&mut self, i: usize) {
        self.nets[i].heal();
    }

    /// `GET /v1/status` of node `i` (3 s limit).
    pub fn status(&self, i: usize) -> Result<Value, String> {
        fetch_status(self.agents[i].api())
    }

    /// The leader as the live nodes see it: the `leader_id` reported by more
    /// than half of the live nodes that answered `/v1/status`, if that node is
    /// itself live (a killed or partitioned leader still named by stale
    /// followers does not count).
    pub fn leader(&self) -> Option<usize> {
        let mut answers = 0;
        let mut votes: BTreeMap<String, usize> = BTreeMap::new();
        for i in self.live_nodes() {
            if let Ok(v) = self.status(i) {
                answers += 1;
                if let Some(l) = v["leader_id"].as_str().filter(|s| !s.is_empty()) {
                    *votes.entry(l.to_string()).or_default() += 1;
                }
            }
        }
        let (id, n) = votes.into_iter().max_by_key(|(_, n)| *n)?;
        if n * 2 <= answers {
            return None;
        }
        self.node_index(&id).filter(|&i| self.is_live(i))
    }

    /// Polls [`Cluster::leader`] until there is one; returns its index.
    #[track_caller]
    pub fn wait_for_leader(&self, timeout: Duration) -> usize {
        poll_until_ok("a leader agreed on by the live nodes", timeout, || {
            self.leader().ok_or_else(|| self.describe_statuses())
        })
    }

    fn describe_statuses(&self) -> String {
        let mut s = String::new();
        for i in 0..self.len() {
            let state = if !self.is_live(i) {
                "not live".to_string()
            } else {
                match self.status(i) {
                    Ok(v) => format!("leader_id={} term={}", v["leader_id"], v["term"]),
                    Err(e) => e,
                }
            };
            s.push_str(&format!("\n  node{i}: {state}"));
        }
        s
    }

    /// Runs `skein -o json args…` on node `i` (10 s limit): the JSON, or why not.
    pub fn try_cli_json(&self, i: usize, args: &[&str]) -> Result<Value, String> {
        let mut a = vec!["-o", "json"];
        a.extend_from_slice(args);
        let o = self.agents[i]
            .try_cli_timeout(POLL_CALL_TIMEOUT, &a)
            .ok_or_else(|| format!("node{i}: `skein {}` timed out", a.join(" ")))?;
        if !o.success() {
            return Err(format!("node{i}: {o}"));
        }
        serde_json::from_str(&o.stdout).map_err(|e| format!("node{i}: not JSON ({e}): {o}"))
    }

    /// `node ls -o json` on node `i`.
    pub fn nodes(&self, i: usize) -> Result<Vec<Value>, String> {
        self.try_cli_json(i, &["node", "ls"])
            .map(|v| v.as_array().cloned().unwrap_or_default())
    }

    /// `alloc ls --job JOB -o json` on node `i`.
    pub fn allocs(&self, i: usize, job: &str) -> Result<Vec<Value>, String> {
        self.try_cli_json(i, &["alloc", "ls", "--job", job])
            .map(|v| v.as_array().cloned().unwrap_or_default())
    }

    /// Polls `node ls -o json` on node `on` until exactly `count_ready` nodes
    /// are `ready`; returns that listing.
    #[track_caller]
    pub fn wait_for_nodes_on(
        &self,
        on: usize,
        count_ready: usize,
        timeout: Duration,
    ) -> Vec<Value> {
        poll_until_ok(
            &format!("{count_ready} ready nodes in `node ls` on node{on}"),
            timeout,
            || {
                let nodes = self.nodes(on)?;
                let ready = nodes.iter().filter(|n| n["health"] == "ready").count();
                if ready == count_ready {
                    Ok(nodes)
                } else {
                    Err(format!("{ready} ready: {}", summarize_nodes(&nodes)))
                }
            },
        )
    }

    /// [`Cluster::wait_for_nodes_on`] the first live node.
    #[track_caller]
    pub fn wait_for_nodes(&self, count_ready: usize, timeout: Duration) -> Vec<Value> {
        let on = *self.live_nodes().first().expect("no live node");
        self.wait_for_nodes_on(on, count_ready, timeout)
    }

    /// Full ids of node `i`'s containers of `job`, running or not (labels
    /// `skein.node=<id of i>`, `skein.job=<job>`).
    #[track_caller]
    pub fn containers_on(&self, i: usize, job: &str) -> Vec<String> {
        self.agents[i].job_containers(job)
    }

    /// Like [`Cluster::containers_on`], running containers only.
    #[track_caller]
    pub fn running_containers_on(&self, i: usize, job: &str) -> Vec<String> {
        let node = format!("label=skein.node={}", self.agents[i].node_id());
        let job = format!("label=skein.job={job}");
        crate::docker(&[
            "ps",
            "-q",
            "--no-trunc",
            "--filter",
            &node,
            "--filter",
            &job,
        ])
        .lines()
        .map(str::to_string)
        .collect()
    }

    /// Running containers of `job` on every node of the cluster, by node index.
    #[track_caller]
    pub fn running_containers(&self, job: &str) -> Vec<Vec<String>> {
        (0..self.len())
            .map(|i| self.running_containers_on(i, job))
            .collect()
    }

    /// Containers of `job` (any state) of every node of the cluster.
    #[track_caller]
    pub fn all_containers(&self, job: &str) -> Vec<String> {
        let job = format!("skein.job={job}");
        self.agents
            .iter()
            .flat_map(|a| containers_with_labels(&[&format!("skein.node={}", a.node_id()), &job]))
            .collect()
    }

    /// One line per node for failure messages.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "cluster on bridge {} ({}):",
            self.bridge.name,
            self.bridge.subnet()
        );
        for (i, a) in self.agents.iter().enumerate() {
            let state = match (a.pid(), self.nets[i].partition_mode()) {
                (None, _) => "killed".to_string(),
                (Some(pid), None) => format!("pid {pid}"),
                (Some(pid), Some(m)) => format!("pid {pid}, partitioned ({m:?})"),
            };
            s.push_str(&format!(
                "\n  node{i}: id {} api {} ns {} log {} — {state}",
                a.node_id(),
                a.api(),
                self.nets[i].name(),
                a.log_path().display()
            ));
        }
        s
    }
}

/// `name(health, role)` for each node, for messages.
pub fn summarize_nodes(nodes: &[Value]) -> String {
    nodes
        .iter()
        .map(|n| {
            format!(
                "{}({},{})",
                n["name"].as_str().unwrap_or("?"),
                n["health"].as_str().unwrap_or("?"),
                n["role"].as_str().unwrap_or("?")
            )
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking {
            eprintln!("skein-e2e: {}", self.describe());
        }
        // Stop every agent first, so none re-creates containers of another.
        for a in &mut self.agents {
            a.kill9();
        }
        if panicking {
            // Sequentially: each prints its log tail (only on the panicking thread).
            self.agents.clear();
        } else {
            // In parallel: each drop sweeps its node's containers for at
            // least a second.
            std::thread::scope(|s| {
                for a in self.agents.drain(..) {
                    s.spawn(move || drop(a));
                }
            });
        }
        // Deleting a namespace deletes its partition rules too.
        self.nets.clear();
        // The bridge (and its slot lock) goes with the fields.
    }
}

/// Polls `f` for `window` (every `every`), requiring it to hold each time;
/// returns how many checks passed. Panics with `what` and `f`'s error at the
/// first violation. For "X stays true during …" observations, not for
/// waiting.
#[track_caller]
pub fn hold_for<E: std::fmt::Debug>(
    what: &str,
    window: Duration,
    every: Duration,
    mut f: impl FnMut() -> Result<(), E>,
) -> usize {
    let start = Instant::now();
    let mut checks = 0;
    loop {
        if let Err(e) = f() {
            panic!(
                "{what} stopped holding after {:.1?} ({checks} checks passed): {e:?}",
                start.elapsed()
            );
        }
        checks += 1;
        let elapsed = start.elapsed();
        if elapsed >= window {
            return checks;
        }
        std::thread::sleep(every.min(window - elapsed));
    }
}
