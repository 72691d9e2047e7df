//! Deploy: N replicas of the demo image from "submitted" to "N running",
//! where running means the host's engine lists N running containers of
//! it (the same check for every contender, asked every 100 ms):
//!
//! - Skein: `POST /v1/jobs` of one job of N replicas (requests 10m CPU and
//!   16 MiB each so that 50 fit on 2 cores, `pull: if-not-present`); a
//!   fresh agent with default flags for 50 on one node, a fresh 3-node
//!   cluster in network namespaces for 200 on 3; also when Skein's own API
//!   reports all N allocations running;
//! - the engine's floor: `docker run -d` N times, 8 at once;
//! - Docker Swarm: `docker service create --detach --replicas N` on a
//!   one-node swarm made for that measure and left after it.
//!
//! Each trial starts from no container of the bench; what one contender
//! made is removed (not timed) before the next starts.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use skein_e2e::{
    http_get_url, http_post_url, try_poll_until, unique_name, Agent, AgentOpts, Cluster,
    ClusterOpts, DEMO_IMAGE,
};

use super::peers::{docker_run, Swarm, Sweep};
use super::{attempt, failures, median, ratio, spread, wait_running, POLL};

/// Limit for one timed deploy.
const LIMIT: Duration = Duration::from_secs(600);
/// Limit for set-up steps (agents ready, cluster formed).
const SETUP: Duration = Duration::from_secs(120);
/// `docker run` processes at once for the floor.
const PARALLEL: usize = 8;

/// One line of the table: key, what, how many.
const ROWS: &[(&str, &str, usize)] = &[
    ("skein50", "Skein, 1 node: `POST /v1/jobs` → 50 running", 50),
    (
        "skein50_api",
        "Skein, 1 node: `POST /v1/jobs` → its API reports 50 running",
        50,
    ),
    (
        "raw50",
        "engine floor: `docker run -d` ×50, 8 at once → 50 running",
        50,
    ),
    (
        "swarm50",
        "Docker Swarm: `docker service create --replicas 50` → 50 running",
        50,
    ),
    (
        "skein200",
        "Skein, 3 nodes (namespaces, one engine): `POST /v1/jobs` → 200 running",
        200,
    ),
    (
        "skein200_api",
        "Skein, 3 nodes: `POST /v1/jobs` → its API reports 200 running",
        200,
    ),
    (
        "raw200",
        "engine floor: `docker run -d` ×200, 8 at once → 200 running",
        200,
    ),
    (
        "swarm200",
        "Docker Swarm (1 node): `--replicas 200` → 200 running",
        200,
    ),
];

#[derive(Default)]
struct Results {
    secs: std::collections::BTreeMap<&'static str, Vec<f64>>,
    failed: Vec<(String, String)>,
}

impl Results {
    fn record(
        &mut self,
        trial: usize,
        what: &str,
        r: Result<Vec<(&'static str, Duration)>, String>,
    ) {
        match r {
            Ok(v) => {
                for (k, d) in v {
                    eprintln!("deploy trial {trial}: {k} {:.2}s", d.as_secs_f64());
                    self.secs.entry(k).or_default().push(d.as_secs_f64());
                }
            }
            Err(e) => self.failed.push((format!("trial {trial}, {what}"), e)),
        }
    }
}

/// Runs `trials` of every contender and returns the document's part.
pub fn run(trials: usize, profile: &str) -> String {
    let mut res = Results::default();
    for t in 1..=trials {
        for n in [50usize, 200] {
            let r = attempt("raw", || raw(n).map(|d| vec![(key(&format!("raw{n}")), d)]));
            res.record(t, &format!("raw {n}"), r);
            let r = attempt("skein", || {
                skein(n).map(|(d, api)| {
                    vec![
                        (key(&format!("skein{n}")), d),
                        (key(&format!("skein{n}_api")), api),
                    ]
                })
            });
            res.record(t, &format!("skein {n}"), r);
            // A swarm only around its own measure: its manager's work must
            // not load the others.
            let r = attempt("swarm", || {
                let swarm = Swarm::init()?;
                on_swarm(&swarm, n).map(|d| vec![(key(&format!("swarm{n}")), d)])
            });
            res.record(t, &format!("swarm {n}"), r);
        }
    }
    report(trials, &res, profile)
}

/// The static key of the row named `k`.
fn key(k: &str) -> &'static str {
    ROWS.iter().find(|r| r.0 == k).map_or("?", |r| r.0)
}

/// The request body of one job of `n` replicas.
fn job(name: &str, n: usize) -> Vec<u8> {
    json!({"jobs": [{
        "name": name,
        "replicas": n,
        "image": DEMO_IMAGE,
        "pull": "if-not-present",
        "resources": {"requests": {"cpu_millis": 10, "memory_bytes": 16u64 << 20}},
    }]})
    .to_string()
    .into_bytes()
}

/// Allocations of `job` that the API at `api` reports running.
fn api_running(api: &str, job: &str) -> usize {
    match http_get_url(&format!("http://{api}/v1/allocs?job={job}")) {
        Ok((200, body)) => serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .map_or(0, |a| {
                a.iter()
                    .filter(|a| a["status"]["state"] == "running")
                    .count()
            }),
        _ => 0,
    }
}

/// Submits the job through `api` and times it: (engine lists n running,
/// the API reports n running).
fn submit_and_time(api: &str, n: usize) -> Result<(Duration, Duration), String> {
    let name = unique_name("deploy");
    let body = job(&name, n);
    let t0 = Instant::now();
    let (code, answer) = http_post_url(&format!("http://{api}/v1/jobs"), &body)?;
    if code != 200 {
        return Err(format!("POST /v1/jobs answered {code}: {answer}"));
    }
    let engine = wait_running(&format!("skein.job={name}"), n, t0, LIMIT)?;
    while api_running(api, &name) < n {
        if t0.elapsed() > LIMIT {
            return Err(format!(
                "the API does not report {n} running after {LIMIT:?}"
            ));
        }
        std::thread::sleep(POLL);
    }
    Ok((engine, t0.elapsed()))
}

fn skein(n: usize) -> Result<(Duration, Duration), String> {
    if n == 50 {
        // The agent's defaults: what an operator gets without flags.
        let agent = Agent::start(AgentOpts::named("n0"));
        agent.wait_for_leader(SETUP);
        ready_nodes(agent.api(), 1)?;
        submit_and_time(agent.api(), n)
    } else {
        let c = Cluster::start(3, ClusterOpts::default());
        c.wait_for_nodes(3, SETUP);
        let leader = c.wait_for_leader(SETUP);
        ready_nodes(c.node(leader).api(), 3)?;
        submit_and_time(c.node(leader).api(), n)
    }
}

/// Waits until the API at `api` lists `n` ready nodes.
fn ready_nodes(api: &str, n: usize) -> Result<(), String> {
    try_poll_until(SETUP, || {
        let (code, body) = http_get_url(&format!("http://{api}/v1/nodes")).ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let ready = v
            .as_array()?
            .iter()
            .filter(|x| x["health"] == "ready")
            .count();
        (code == 200 && ready == n).then_some(())
    })
    .ok_or_else(|| format!("{n} ready nodes not listed after {SETUP:?}"))
}

fn raw(n: usize) -> Result<Duration, String> {
    let sweep = Sweep::new("raw");
    let t0 = Instant::now();
    docker_run(n, PARALLEL, &sweep.label, DEMO_IMAGE)?;
    wait_running(&sweep.label, n, t0, LIMIT)
}

fn on_swarm(swarm: &Swarm, n: usize) -> Result<Duration, String> {
    let name = unique_name("swarm");
    let t0 = Instant::now();
    let r = swarm
        .create(&name, n, DEMO_IMAGE)
        .and_then(|()| wait_running(swarm.label(), n, t0, LIMIT));
    swarm.clear();
    r
}

fn report(trials: usize, res: &Results, profile: &str) -> String {
    let med = |k: &str| res.secs.get(k).and_then(|v| median(v));
    let mut s = String::new();
    let _ = writeln!(s, "### Deploy: replicas from submit to running\n");
    let _ = writeln!(
        s,
        "Replicas of the demo image (busybox httpd, 2 MB) from submitted until the host's \
         engine lists them all running (`GET /containers/json` on its socket every 100 ms, \
         the same check for every contender). Skein: `POST /v1/jobs` of one job (requests \
         10m CPU and 16 MiB per replica so that 50 fit the scheduler on 2 cores; `pull: \
         if-not-present`), a fresh agent ({profile} build, default flags) for 50, a fresh \
         3-node cluster in network namespaces sharing the host's engine for 200. Engine \
         floor: `docker run -d` N times, 8 at once. Swarm: a one-node swarm on loopback made \
         for each measure (`docker swarm init --advertise-addr 127.0.0.1`, left with `--force` after it), `docker service create --detach --no-resolve-image --replicas N`. \
         {trials} {}; times in seconds; ratios of medians.\n",
        if trials == 1 { "trial" } else { "trials" }
    );
    let _ = writeln!(
        s,
        "| contender: from → until | min | median | max | × floor | × Swarm |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for (k, what, n) in ROWS {
        let v = res.secs.get(k).cloned().unwrap_or_default();
        let floor = med(&format!("raw{n}"));
        let swarm = med(&format!("swarm{n}"));
        let _ = writeln!(
            s,
            "| {what} | {} | {} | {} |",
            spread(&v, 2),
            ratio(med(k), floor),
            ratio(med(k), swarm),
        );
    }
    let _ = writeln!(
        s,
        "\nGoal: Skein ≤ 1.10× the floor and ≤ 0.70× Swarm. Today: 50 on 1 node {}× the \
         floor and {}× Swarm; 200 on 3 nodes {}× the floor for 200.",
        ratio(med("skein50"), med("raw50")),
        ratio(med("skein50"), med("swarm50")),
        ratio(med("skein200"), med("raw200")),
    );
    s.push_str(&failures(&res.failed));
    s
}
