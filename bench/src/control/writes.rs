//! Writes: acknowledged writes per second with `wrk` (2 threads, 16
//! connections, [`DURATION`]), the one script [`SCRIPT`] for every target:
//! each request writes one distinct small job spec — to Skein as `POST
//! /v1/jobs` of one job of 0 replicas (nothing is scheduled, so no
//! container starts), to etcd as `POST /v3/kv/put` of the same spec as
//! value under `/jobs/NAME`.
//!
//! Targets, each fresh for every run: one Skein node (loopback) and one
//! etcd member; 3 Skein voters (network namespaces) and 3 etcd members
//! (loopback), written through the leader and through a follower; and one
//! Skein node already holding [`LOADS`] jobs (preloaded in batches of
//! [`BATCH`], not timed; the state quota may refuse before, then the run
//! is at what it took).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use skein_e2e::{
    http_get_url, http_post_url, run_with_timeout, try_poll_until, unique_name, Agent, AgentOpts,
};

use super::peers::Etcd;
use super::{attempt, failures, median, ratio, spread};

/// The wrk script (see its header).
const SCRIPT: &str = include_str!("write.lua");
/// How long each wrk run lasts.
const DURATION: Duration = Duration::from_secs(10);
/// Concurrent connections.
const CONNECTIONS: usize = 16;
/// Jobs held before the loaded runs, each with its row's key. The state
/// quota (`STATE_QUOTA_BYTES`, 8 MiB) holds about 9,000 jobs of 0
/// replicas today (~920 bytes each encoded), so neither 10,000 nor
/// 100,000 can be held; 5,000 (~4.4 MiB) leaves room for the run's own
/// writes (see the report).
const LOADS: &[(usize, &str)] = &[(1_000, "skein1_1000"), (5_000, "skein1_5000")];
/// Jobs per preload request.
const BATCH: usize = 500;
/// Limit for set-up steps.
const SETUP: Duration = Duration::from_secs(120);

/// What one wrk run measured.
#[derive(Debug, Clone)]
struct Run {
    /// Answers 200 per second.
    ok_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Requests that were not answered 200 (any reason), and a sample.
    errors: u64,
    sample: Option<String>,
    /// What the target held when the run started (Skein only).
    held: Option<Held>,
}

/// The table's lines: key, target, key of the row it is compared with,
/// what that comparison is.
const ROWS: &[(&str, &str, Option<&str>)] = &[
    ("skein1", "Skein, 1 node, empty", Some("etcd1")),
    ("etcd1", "etcd, 1 member", None),
    (
        "skein3_leader",
        "Skein, 3 voters, through the leader",
        Some("etcd3_leader"),
    ),
    (
        "skein3_follower",
        "Skein, 3 voters, through a follower",
        Some("etcd3_follower"),
    ),
    ("etcd3_leader", "etcd, 3 members, through the leader", None),
    (
        "etcd3_follower",
        "etcd, 3 members, through a follower",
        None,
    ),
    (
        "skein1_1000",
        "Skein, 1 node, holding 1,000 jobs",
        Some("skein1"),
    ),
    (
        "skein1_5000",
        "Skein, 1 node, holding 5,000 jobs",
        Some("skein1"),
    ),
];

#[derive(Default)]
struct Results {
    runs: BTreeMap<&'static str, Vec<Run>>,
    failed: Vec<(String, String)>,
    /// How many jobs a preload reached when the quota refused it.
    refused_at: BTreeMap<usize, Vec<(usize, String)>>,
}

impl Results {
    fn record(&mut self, trial: usize, key: &'static str, r: Result<Run, String>) {
        match r {
            Ok(run) => {
                eprintln!(
                    "writes trial {trial}: {key}: {:.0}/s (p50 {:.1} ms, p99 {:.1} ms, {} errors{})",
                    run.ok_per_sec,
                    run.p50_ms,
                    run.p99_ms,
                    run.errors,
                    run.held.map_or(String::new(), |h| format!(", {} held", h.show())),
                );
                self.runs.entry(key).or_default().push(run);
            }
            Err(e) => self.failed.push((format!("trial {trial}, {key}"), e)),
        }
    }
}

/// Runs `trials` of every target and returns the document's part.
pub fn run(trials: usize, _profile: &str) -> String {
    let script = tempfile::Builder::new()
        .prefix("skein-bench-")
        .suffix(".lua")
        .tempfile()
        .expect("a temporary file for the wrk script");
    std::fs::write(script.path(), SCRIPT).expect("write the wrk script");
    let script = script.path().to_string_lossy().into_owned();
    let mut res = Results::default();
    for t in 1..=trials {
        let r = attempt("etcd 1", || {
            let e = Etcd::start(1)?;
            wrk(&e.clients[0], "etcd", &script, None)
        });
        res.record(t, "etcd1", r);
        for (key, via_leader) in [("etcd3_leader", true), ("etcd3_follower", false)] {
            let r = attempt(key, || {
                let e = Etcd::start(3)?;
                let leader = e.leader().ok_or("no etcd leader")?;
                let via = if via_leader { leader } else { (leader + 1) % 3 };
                wrk(&e.clients[via], "etcd", &script, None)
            });
            res.record(t, key, r);
        }
        for (key, via_leader) in [("skein3_leader", true), ("skein3_follower", false)] {
            let r = attempt(key, || {
                let (c, leader) = crate::cluster();
                let via = if via_leader { leader } else { (leader + 1) % 3 };
                let url = c.node(via).base_url();
                wrk(&url, "skein", &script, held(&url))
            });
            res.record(t, key, r);
        }
        // One node: empty, then topped up to each load in turn.
        let agent = attempt("skein 1", || Ok(one_node()));
        let Ok(agent) = agent else {
            res.failed
                .push((format!("trial {t}, skein1"), "agent did not start".into()));
            continue;
        };
        let url = agent.base_url();
        let r = attempt("skein1", || wrk(&url, "skein", &script, held(&url)));
        res.record(t, "skein1", r);
        for &(load, key) in LOADS {
            let r = attempt(key, || {
                let jobs = held(&url).ok_or("cannot count the jobs held")?.jobs;
                if let Err((reached, why)) = preload(&url, jobs, load) {
                    eprintln!("writes trial {t}: preload to {load} stopped at {reached}: {why}");
                    res.refused_at.entry(load).or_default().push((reached, why));
                }
                wrk(&url, "skein", &script, held(&url))
            });
            res.record(t, key, r);
        }
        drop(agent);
    }
    report(trials, &res)
}

/// A fresh one-node Skein (default flags) that leads itself.
fn one_node() -> Agent {
    let a = Agent::start(AgentOpts::named("n0"));
    a.wait_for_leader(SETUP);
    a
}

/// What a Skein node holds.
#[derive(Debug, Clone, Copy)]
struct Held {
    jobs: usize,
    /// The state's size, encoded.
    bytes: u64,
}

impl Held {
    fn show(self) -> String {
        format!("{} ({:.1} MiB)", self.jobs, self.bytes as f64 / 1048576.0)
    }
}

/// What the node at `url` holds, from its `/metrics` (one
/// `skein_job_desired_replicas` line per job, `skein_state_bytes`): much
/// smaller than `/v1/jobs`, whose body near the quota outgrows the HTTP
/// client's 10 MB limit. Asked again while the node is busy with the
/// writes a run left in flight.
fn held(url: &str) -> Option<Held> {
    try_poll_until(SETUP, || {
        let (code, body) = http_get_url(&format!("{url}/metrics")).ok()?;
        if code != 200 {
            return None;
        }
        let jobs = body
            .lines()
            .filter(|l| l.starts_with("skein_job_desired_replicas{"))
            .count();
        let bytes = body
            .lines()
            .find_map(|l| l.strip_prefix("skein_state_bytes "))?
            .trim()
            .parse()
            .ok()?;
        Some(Held { jobs, bytes })
    })
}

/// Applies jobs of 0 replicas in batches until the node holds `target`
/// (it holds `held`); `Err` with what it reached and why it stopped.
fn preload(url: &str, mut held: usize, target: usize) -> Result<(), (usize, String)> {
    let prefix = unique_name("pre");
    let mut i = 0usize;
    while held < target {
        let n = BATCH.min(target - held);
        let jobs: Vec<Value> = (0..n)
            .map(|k| {
                serde_json::json!({
                    "name": format!("{prefix}-{}", i + k),
                    "replicas": 0,
                    "image": skein_e2e::DEMO_IMAGE,
                    "pull": "never",
                })
            })
            .collect();
        let body = serde_json::json!({ "jobs": jobs }).to_string();
        match http_post_url(&format!("{url}/v1/jobs"), body.as_bytes()) {
            Ok((200, _)) => {
                held += n;
                i += n;
            }
            Ok((code, answer)) => {
                let answer: String = answer.chars().take(300).collect();
                return Err((held, format!("{code}: {answer}")));
            }
            Err(e) => return Err((held, e)),
        }
    }
    Ok(())
}

/// One wrk run against `url` in `mode` (`skein` or `etcd`).
fn wrk(url: &str, mode: &str, script: &str, held: Option<Held>) -> Result<Run, String> {
    let prefix = unique_name("w");
    let mut cmd = Command::new("wrk");
    cmd.args(["-t2", &format!("-c{CONNECTIONS}")])
        .arg(format!("-d{}s", DURATION.as_secs()))
        .args(["--timeout", "10s", "-s", script, url, "--", mode, &prefix])
        .env("NO_PROXY", "*");
    let o = run_with_timeout(&mut cmd, DURATION + Duration::from_secs(60));
    if !o.success() {
        return Err(format!(
            "{o}\n(install wrk with `apt-get install wrk` if it is missing)"
        ));
    }
    let line = o
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCH "))
        .ok_or_else(|| format!("no BENCH line in wrk's output:\n{}", o.stdout))?;
    let field = |k: &str| -> Option<&str> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(k)?.strip_prefix('='))
    };
    let num = |k: &str| -> Result<u64, String> {
        field(k)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("wrk's BENCH line has no {k}: {line}"))
    };
    let codes: BTreeMap<u16, u64> = field("codes")
        .unwrap_or("")
        .split(',')
        .filter_map(|c| {
            let (k, v) = c.split_once(':')?;
            Some((k.parse().ok()?, v.parse().ok()?))
        })
        .collect();
    let ok = codes.get(&200).copied().unwrap_or(0);
    let requests = num("requests")?;
    let socket_errors = num("connect")? + num("read")? + num("write")? + num("timeout")?;
    let secs = num("duration_us")? as f64 / 1e6;
    Ok(Run {
        ok_per_sec: ok as f64 / secs.max(1e-9),
        p50_ms: num("p50_us")? as f64 / 1000.0,
        p99_ms: num("p99_us")? as f64 / 1000.0,
        errors: requests.saturating_sub(ok) + socket_errors,
        sample: o
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("BENCH_SAMPLE "))
            .map(str::to_string),
        held,
    })
}

fn report(trials: usize, res: &Results) -> String {
    let rates = |k: &str| -> Vec<f64> {
        res.runs
            .get(k)
            .map(|v| v.iter().map(|r| r.ok_per_sec).collect())
            .unwrap_or_default()
    };
    let med = |k: &str| median(&rates(k));
    let mut s = String::new();
    let _ = writeln!(s, "### Writes: acknowledged job writes per second\n");
    let _ = writeln!(
        s,
        "`wrk -t2 -c{CONNECTIONS} -d{}s --timeout 10s -s bench/src/control/write.lua`, the same \
         script for every target: each request writes one distinct small job spec \
         (`{{\"name\":…,\"replicas\":0,\"image\":\"skein-demo/web:latest\",\"pull\":\"never\"}}`, \
         0 replicas so no container starts) — to Skein as `POST /v1/jobs`, to etcd (Debian's \
         etcd {}, default flags) as `POST /v3/kv/put` of that spec under `/jobs/NAME` on its \
         v3 HTTP gateway. Counted: answers 200 per second. Every target is fresh for each run: \
         Skein on loopback (1 node) or in network namespaces (3 voters, default flags), etcd on \
         loopback. The loaded runs preload jobs of 0 replicas in batches of {BATCH} first \
         (not timed). {trials} {}; ratios of medians; latencies are the median run's.\n",
        DURATION.as_secs(),
        etcd_version(),
        if trials == 1 { "trial" } else { "trials" },
    );
    let _ = writeln!(
        s,
        "| target | writes/s min | median | max | ratio | p50 ms | p99 ms | jobs held at start (state size) | not 200 |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    for (k, what, vs) in ROWS {
        let runs = res.runs.get(k).cloned().unwrap_or_default();
        let mut sorted = runs.clone();
        sorted.sort_by(|a, b| a.ok_per_sec.total_cmp(&b.ok_per_sec));
        let mid = sorted.get(sorted.len().saturating_sub(1).div_ceil(2));
        let ratio_text = match vs {
            Some(b) => format!("{} × {}", ratio(med(k), med(b)), short(b)),
            None => "-".into(),
        };
        let held = {
            let h: Vec<String> = runs.iter().filter_map(|r| r.held).map(Held::show).collect();
            if h.is_empty() {
                "-".into()
            } else {
                h.join(", ")
            }
        };
        let errors: u64 = runs.iter().map(|r| r.errors).sum();
        let _ = writeln!(
            s,
            "| {what} | {} | {ratio_text} | {} | {} | {held} | {errors} |",
            spread(&rates(k), 0),
            mid.map_or("-".into(), |r| format!("{:.1}", r.p50_ms)),
            mid.map_or("-".into(), |r| format!("{:.1}", r.p99_ms)),
        );
    }
    let _ = writeln!(
        s,
        "\nGoal: ≥ 1.00× etcd; holding 100,000 entries within 20% of empty (≥ 0.80×). Today: \
         1 node {}× etcd, 3 voters through the leader {}× and through a follower {}× etcd; \
         holding 1,000 jobs {}× empty, holding 5,000 jobs {}× empty. Neither 10,000 nor \
         100,000 jobs can be held: the state quota (8 MiB encoded) takes about 9,000 jobs of 0 \
         replicas (~920 bytes each; preloads stopped there with 413 in an earlier run), and \
         allocations cannot stand in for them (each is a container on a node); 5,000 is the \
         largest load that leaves room for the run's own writes. Writes refused by the quota \
         would be answered 413 and not counted.",
        ratio(med("skein1"), med("etcd1")),
        ratio(med("skein3_leader"), med("etcd3_leader")),
        ratio(med("skein3_follower"), med("etcd3_follower")),
        ratio(med("skein1_1000"), med("skein1")),
        ratio(med("skein1_5000"), med("skein1")),
    );
    for (load, v) in &res.refused_at {
        let reached: Vec<String> = v.iter().map(|(n, _)| n.to_string()).collect();
        let why = v.first().map_or("", |(_, w)| w.as_str());
        let _ = writeln!(
            s,
            "\nThe preload to {load} jobs was refused at {} jobs (the run was made at what it \
             held): {why}",
            reached.join(", "),
        );
    }
    let samples: Vec<String> = res
        .runs
        .iter()
        .flat_map(|(k, v)| {
            v.iter()
                .filter_map(move |r| Some(format!("{k}: {}", r.sample.as_ref()?)))
        })
        .take(4)
        .collect();
    if !samples.is_empty() {
        let _ = writeln!(s, "\nFirst answers that were not 200:\n");
        for x in samples {
            let _ = writeln!(s, "- `{}`", x.replace('`', "'"));
        }
    }
    s.push_str(&failures(&res.failed));
    s
}

/// The column label of a comparison's base.
fn short(key: &str) -> &'static str {
    if key.starts_with("etcd") {
        "etcd"
    } else {
        "empty"
    }
}

/// `etcd --version`'s first line's version, `?` when it cannot run.
fn etcd_version() -> String {
    let Ok(o) = Command::new("etcd").arg("--version").output() else {
        return "?".into();
    };
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("etcd Version: "))
        .unwrap_or("?")
        .to_string()
}
