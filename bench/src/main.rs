//! Benchmarks of real clusters; each mode rewrites only its own section of
//! docs/performance.md (between `<!-- bench:MODE -->` and
//! `<!-- /bench:MODE -->`), leaving the others as they are. The agents run
//! `SKEIN_BIN` (what operators install: the release build) or else the
//! debug build. Both modes need root and the demo image.
//!
//! `[SKEIN_BIN=target/release/skein] cargo run -p skein-bench [-- TRIALS]`
//! (mode `failover`): a real 3-node cluster in network namespaces, real
//! Docker:
//!
//! - node failover: SIGKILL a follower holding replicas of a 6-replica job;
//!   time until all 6 run and none is on the killed node (goal ≤ 5 s);
//! - leader failover: SIGKILL the leader; time until a write through a
//!   surviving node is committed;
//! - idle agent memory (VmRSS) and the size of the `skein` binary.
//!
//! `cargo run -p skein-bench -- images [TRIALS]`: an image of about 50 MB
//! to 3 nodes with separate Docker Engines — registry pull vs mesh copy vs
//! `docker save | docker load` by hand (see [`images`]).
//!
//! `cargo run --release -p skein-bench -- control [deploy|writes|failover]
//! [TRIALS]`: the control plane side by side with its peers in the same
//! run — deploys vs `docker run` and Docker Swarm, writes/s vs etcd,
//! leader failover under writes (see [`control`]).
//!
//! `cargo run --release -p skein-bench -- fuzz [CASES]`: every decoder of
//! outside bytes on CASES mutated inputs (default 1,000,000 each), no
//! panic and no allocation beyond its limit (see [`fuzz`]); needs neither
//! root nor Docker.
//!
//! `cargo run --release -p skein-bench -- scheduler`: placements per second
//! at 500 and 5,000 simulated nodes, ranked against the exhaustive scan, and
//! the leader's planning time of a 10,000-replica job (see [`scheduler`]);
//! in process, needs neither root nor Docker.

mod control;
mod doc;
mod fuzz;
mod images;
mod scheduler;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::Value;
use skein_e2e::{unique_name, Cluster, ClusterOpts};

/// The agent's defaults: the figures are what an operator gets without flags.
const ARGS: &[&str] = &[];
const POLL: Duration = Duration::from_millis(50);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let trials_arg = |i: usize| -> usize {
        match args.get(i) {
            None => 3,
            Some(a) => a.parse().unwrap_or_else(|_| usage(a)),
        }
    };
    match args.first().map(String::as_str) {
        Some("images") => images::run(trials_arg(1)),
        Some("fuzz") => fuzz::run(match args.get(1) {
            None => 1_000_000,
            Some(a) => a.parse().unwrap_or_else(|_| usage(a)),
        }),
        Some("scheduler") => scheduler::run(),
        Some("control") => {
            // `control [MEASURE] [TRIALS]`, either may be left out.
            let (which, trials) = match args.get(1).map(String::as_str) {
                Some(m @ ("deploy" | "writes" | "failover")) => (Some(m), args.get(2)),
                Some(_) => (None, args.get(1)),
                None => (None, None),
            };
            let trials = trials.map(|a| a.parse().unwrap_or_else(|_| usage(a)));
            control::run(which, trials)
        }
        Some("failover") => failover(trials_arg(1)),
        _ => failover(trials_arg(0)),
    }
}

fn usage(bad: &str) -> ! {
    eprintln!(
        "skein-bench: unexpected argument {bad:?}\n\
         usage: skein-bench [failover] [TRIALS] | skein-bench images [TRIALS] | skein-bench fuzz [CASES]\n       \
         | skein-bench scheduler | skein-bench control [deploy|writes|failover] [TRIALS]"
    );
    std::process::exit(2)
}

fn failover(trials: usize) {
    let mut node = Vec::new();
    let mut leader = Vec::new();
    let mut rss = Vec::new();
    for t in 0..trials {
        let (n, mem) = node_failover();
        eprintln!("trial {}: node failover {:.2}s", t + 1, n.as_secs_f64());
        node.push(n);
        rss.extend(mem);
        let l = leader_failover();
        eprintln!("trial {}: leader failover {:.2}s", t + 1, l.as_secs_f64());
        leader.push(l);
    }
    let table = report(trials, &mut node, &mut leader, &rss);
    doc::write_section("failover", &table);
    print!("{table}");
}

/// A 3-node cluster in network namespaces with [`ARGS`], 3 voters agreed
/// on: it and the leader's index.
pub(crate) fn cluster() -> (Cluster, usize) {
    let c = Cluster::start(3, ClusterOpts::default().args(ARGS));
    c.wait_for_nodes(3, Duration::from_secs(60));
    let leader = c.wait_for_leader(Duration::from_secs(60));
    wait(Duration::from_secs(60), || {
        let nodes = c.nodes(leader).ok()?;
        (nodes.iter().filter(|n| n["role"] != "worker").count() == 3).then_some(())
    });
    (c, leader)
}

fn apply(c: &Cluster, via: usize, job: &str, replicas: u32) {
    let file = c.node(via).write_manifest(
        &format!("{job}.yaml"),
        &format!("name: {job}\nreplicas: {replicas}\nimage: skein-demo/web:latest\nports:\n  - container_port: 80\n"),
    );
    c.node(via)
        .cli(&["apply", "-f", file.to_str().unwrap_or_default()])
        .assert_success();
}

fn allocs(c: &Cluster, via: usize, job: &str) -> Option<Vec<Value>> {
    let (code, body) =
        skein_e2e::http_get_url(&format!("http://{}/v1/allocs?job={job}", c.node(via).api()))
            .ok()?;
    if code != 200 {
        return None;
    }
    serde_json::from_str::<Value>(&body)
        .ok()?
        .as_array()
        .cloned()
}

fn node_failover() -> (Duration, Vec<u64>) {
    let (mut c, leader) = cluster();
    let job = unique_name("bench");
    apply(&c, leader, &job, 6);
    let victim = (0..3).find(|&i| i != leader).unwrap_or(1);
    let victim_id = c.node(victim).node_id().to_string();
    let mem: Vec<u64> = (0..3)
        .filter_map(|i| c.node(i).pid().and_then(vm_rss_kib))
        .collect();
    c.kill(victim);
    let t0 = Instant::now();
    wait(Duration::from_secs(60), || {
        let a = allocs(&c, leader, &job)?;
        let ok = a.len() == 6
            && a.iter().all(|a| {
                a["status"]["state"] == "running"
                    && a["node_id"].as_str() != Some(victim_id.as_str())
            });
        ok.then_some(())
    });
    (t0.elapsed(), mem)
}

fn leader_failover() -> Duration {
    let (mut c, leader) = cluster();
    let job = unique_name("bench");
    apply(&c, leader, &job, 3);
    let via = (0..3).find(|&i| i != leader).unwrap_or(1);
    c.kill(leader);
    let t0 = Instant::now();
    wait(Duration::from_secs(60), || {
        let (code, _) = skein_e2e::http_post_url(
            &format!("http://{}/v1/jobs/{job}/scale", c.node(via).api()),
            br#"{"replicas":4}"#,
        )
        .ok()?;
        (code == 204).then_some(())
    });
    t0.elapsed()
}

pub(crate) fn wait<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "benchmark step timed out after {limit:?}"
        );
        std::thread::sleep(POLL);
    }
}

fn vm_rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub(crate) fn stats(v: &mut [Duration]) -> String {
    v.sort();
    let f = |d: Duration| format!("{:.2}", d.as_secs_f64());
    match (v.first(), v.get(v.len() / 2), v.last()) {
        (Some(a), Some(m), Some(z)) => format!("{} | {} | {}", f(*a), f(*m), f(*z)),
        _ => "- | - | -".into(),
    }
}

/// The `skein` binary the agents run (SKEIN_BIN, else the debug build next
/// to us) and its profile, `release` when it lives in a `release` directory.
pub(crate) fn agent_build() -> (std::path::PathBuf, &'static str) {
    let bin = skein_e2e::skein_bin();
    let profile = if bin.parent().and_then(|d| d.file_name()) == Some("release".as_ref()) {
        "release"
    } else {
        "debug"
    };
    (bin, profile)
}

fn report(trials: usize, node: &mut [Duration], leader: &mut [Duration], rss: &[u64]) -> String {
    let (bin, profile) = agent_build();
    let sibling = |name: &str| {
        bin.parent()
            .and_then(|d| d.parent())
            .map(|t| t.join(name).join("skein"))
            .filter(|p| p.exists())
    };
    let (debug, release) = (sibling("debug"), sibling("release"));
    let size = |p: &std::path::Path| {
        std::fs::metadata(p).map_or("?".into(), |m| {
            format!("{:.1} MiB", m.len() as f64 / 1048576.0)
        })
    };
    let mut s = String::new();
    let _ = writeln!(s, "{}\n", doc::FAILOVER_HEADING);
    let _ = writeln!(
        s,
        "Written by `{}cargo run -p skein-bench -- {trials}` (bench/src/main.rs): a real 3-node \
         cluster in network namespaces on one 2-core machine, real Docker, the {profile} \
         build of the agent, default timings (`--suspect-after 1500ms --dead-after 3s`); \
         {trials} trials each; times in seconds.\n",
        if profile == "release" {
            "SKEIN_BIN=target/release/skein "
        } else {
            ""
        }
    );
    let _ = writeln!(s, "| measure | goal | min | median | max |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    let _ = writeln!(
        s,
        "| node killed → its replicas running elsewhere | ≤ 5 s | {} |",
        stats(node)
    );
    let _ = writeln!(
        s,
        "| leader killed → write through a survivor committed | — | {} |",
        stats(leader)
    );
    let max_rss = rss.iter().max().copied().unwrap_or(0);
    let _ = writeln!(
        s,
        "\n| resource | value |\n|---|---|\n| idle agent RSS ({profile} build, max of {} agents, 6 replicas placed) | {:.1} MiB |\n| `skein` binary (debug) | {} |\n| `skein` binary (release) | {} |",
        rss.len(),
        max_rss as f64 / 1024.0,
        debug.as_deref().map_or("not built".into(), size),
        release.as_deref().map_or("not built (`cargo build --release -p skein-cli`)".into(), size),
    );
    let _ = writeln!(
        s,
        "\nFailover is dominated by failure detection: statuses are gossiped twice a \
         second and a node silent for `--dead-after` is dead; the leader then \
         re-plans at once and the new owners start containers on their next \
         assignment long-poll answer."
    );
    s
}
