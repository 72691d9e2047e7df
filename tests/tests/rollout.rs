//! Deployment lifecycle (issue "Management"): rolling updates that keep
//! the job serving, automatic rollback of a version that crashes,
//! `rollout history` / `undo`, and draining a node of a real cluster.
//!
//! The rolling update is sampled through `alloc ls -o json` about every
//! 100 ms from the moment it is applied until it is over; every sample must
//! keep both bounds of the update strategy.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use skein_e2e::*;

/// Until a rollout (or its rollback) has finished.
const ROLLOUT: Duration = Duration::from_secs(120);
/// Until a cluster has formed.
const FORM: Duration = Duration::from_secs(45);

/// A 4-replica web job gated by an HTTP readiness check, replacing one
/// replica above the count and letting one be down during updates.
fn job_yaml(name: &str, env: &str, command: &str) -> String {
    format!(
        "name: {name}\nreplicas: 4\nimage: {DEMO_IMAGE}\n{command}env: {{ VERSION: \"{env}\" }}\n\
         ports:\n  - {{ name: http, container_port: 80 }}\n\
         checks:\n  - {{ kind: readiness, http: {{ port: http, path: / }}, period: 1, timeout: 2, failure_threshold: 3 }}\n\
         update: {{ max_surge: 1, max_unavailable: 1, progress_deadline: 60 }}\n"
    )
}

fn running_ready(a: &Value) -> bool {
    a["status"]["state"] == "running" && a["status"]["ready"] == true
}

/// What one `alloc ls` sample showed.
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    total: usize,
    ready: usize,
    versions: Vec<u64>,
}

/// Samples `alloc ls --job JOB -o json` in the background until dropped.
struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(agent: &Agent, job: &str) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let mut cmd = agent.cli_command(&["-o", "json", "alloc", "ls", "--job", job]);
        let (s, out) = (stop.clone(), samples.clone());
        let thread = std::thread::spawn(move || {
            let t0 = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let o = run_with_timeout(&mut cmd, Duration::from_secs(10));
                if let Ok(Value::Array(allocs)) = serde_json::from_str::<Value>(&o.stdout) {
                    out.lock().unwrap().push(Sample {
                        at: t0.elapsed(),
                        total: allocs.len(),
                        ready: allocs.iter().filter(|a| running_ready(a)).count(),
                        versions: allocs
                            .iter()
                            .filter_map(|a| a["job_version"].as_u64())
                            .collect(),
                    });
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Sampler {
            stop,
            samples,
            thread: Some(thread),
        }
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.samples.lock().unwrap().clone()
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Asserts both bounds on every sample and prints a summary.
#[track_caller]
fn check_bounds(what: &str, samples: &[Sample], at_least: usize) {
    assert!(
        samples.len() >= at_least,
        "{what}: only {} samples",
        samples.len()
    );
    for s in samples {
        assert!(
            s.total <= 5,
            "{what}: {} allocations at {:?}: {s:?}",
            s.total,
            s.at
        );
        assert!(
            s.ready >= 3,
            "{what}: {} ready at {:?}: {s:?}",
            s.ready,
            s.at
        );
    }
    let max_total = samples.iter().map(|s| s.total).max().unwrap_or(0);
    let min_ready = samples.iter().map(|s| s.ready).min().unwrap_or(0);
    eprintln!(
        "{what}: {} samples over {:.1}s; at most {max_total} allocations, at least {min_ready} ready",
        samples.len(),
        samples.last().map_or(0.0, |s| s.at.as_secs_f64())
    );
}

fn job(agent: &Agent, name: &str) -> Value {
    agent.cli_json(&["job", "status", name])
}

/// Polls until the job's rollout is in `state` with every replica of its
/// version running and ready; returns the job.
#[track_caller]
fn wait_settled(agent: &Agent, name: &str, state: &str) -> Value {
    poll_until_ok(&format!("rollout of {name} {state}"), ROLLOUT, || {
        let j = job(agent, name);
        let version = j["version"].as_u64().unwrap_or(0);
        let allocs = j["allocations"].as_array().cloned().unwrap_or_default();
        let good = allocs
            .iter()
            .filter(|a| a["job_version"] == version && running_ready(a))
            .count();
        if j["rollout"]["state"] == state && allocs.len() == 4 && good == 4 {
            Ok(j)
        } else {
            Err(format!(
                "version {version}, rollout {}, {good}/4 good of {} allocations",
                j["rollout"],
                allocs.len()
            ))
        }
    })
}

#[test]
fn rolling_update_keeps_serving_and_a_crashing_version_rolls_back() {
    require_demo_image();
    let agent = Agent::start(AgentOpts::default());
    let name = unique_name("roll");
    let v1 = agent.write_manifest("v1.yaml", &job_yaml(&name, "1", ""));
    agent
        .cli_timeout(ROLLOUT, &["apply", "-f", v1.to_str().unwrap()])
        .assert_success();
    let out = agent.cli_timeout(ROLLOUT, &["rollout", "status", &name]);
    out.assert_success();
    assert!(out.stdout.contains("complete"), "{out}");
    wait_settled(&agent, &name, "complete");

    // A new env: replaced a step at a time.
    let sampler = Sampler::start(&agent, &name);
    let t0 = Instant::now();
    let v2 = agent.write_manifest("v2.yaml", &job_yaml(&name, "2", ""));
    agent
        .cli_timeout(ROLLOUT, &["apply", "-f", v2.to_str().unwrap()])
        .assert_success();
    let status = agent.cli_timeout(ROLLOUT, &["-o", "json", "rollout", "status", &name]);
    status.assert_success();
    assert_eq!(status.json()["rollout"]["state"], "complete", "{status}");
    let j = wait_settled(&agent, &name, "complete");
    eprintln!(
        "update to version 2 took {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    let samples = sampler.finish();
    check_bounds("update 1 -> 2", &samples, 10);
    assert!(
        samples
            .iter()
            .any(|s| s.versions.contains(&1) && s.versions.contains(&2)),
        "never saw both versions at once: not a rolling update"
    );
    assert_eq!(j["version"], 2);
    assert_eq!(j["spec"]["env"]["VERSION"], "2");
    let rollout = &j["rollout"];
    assert_eq!(
        (
            rollout["from_version"].as_u64(),
            rollout["to_version"].as_u64()
        ),
        (Some(1), Some(2))
    );
    // The containers really run the new spec.
    for id in agent.job_containers(&name) {
        let env = container_inspect(&id)["Config"]["Env"].to_string();
        assert!(env.contains("VERSION=2"), "{env}");
    }

    // A version that exits at once: rolled back to version 2 by itself.
    let sampler = Sampler::start(&agent, &name);
    let t0 = Instant::now();
    let bad = agent.write_manifest(
        "bad.yaml",
        &job_yaml(&name, "3", "command: [/bin/sh, -c, 'exit 1']\n"),
    );
    let out = agent.cli_timeout(ROLLOUT, &["apply", "-f", bad.to_str().unwrap()]);
    out.assert_failure();
    let j = wait_settled(&agent, &name, "rolled-back");
    eprintln!(
        "rollback of version 3 took {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    check_bounds("failed update 2 -> 3 and rollback", &sampler.finish(), 3);
    assert_eq!(j["version"], 2, "{j}");
    assert_eq!(j["spec"]["env"]["VERSION"], "2");
    assert_eq!(j["spec"]["command"], json!([]));
    assert_eq!(j["rollout"]["from_version"], 3);
    assert!(
        j["rollout"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("failing"),
        "{}",
        j["rollout"]
    );
    let status = agent.cli(&["rollout", "status", &name]);
    status.assert_failure();
    assert!(
        status.stderr.contains("rolled back to version 2"),
        "{status}"
    );
    assert!(
        agent.log_tail(200).contains("rollout failed: rolled back"),
        "{}",
        agent.log_tail(40)
    );

    // History: 1, 3 (rolled back), 2 (current).
    let h = agent.cli_json(&["rollout", "history", &name]);
    let listed: Vec<(u64, bool, bool)> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_u64().unwrap(),
                r["current"] == true,
                r["rolled_back"] == true,
            )
        })
        .collect();
    assert_eq!(
        listed,
        [(1, false, false), (3, false, true), (2, true, false)]
    );
    let table = agent.cli(&["rollout", "history", &name]);
    table.assert_success();
    assert!(table.stdout.contains("rolled back"), "{table}");
    assert!(table.stdout.contains(DEMO_IMAGE), "{table}");

    // Undo: back to version 1's spec as version 4.
    let out = agent.cli_json(&["rollout", "undo", &name, "--to-version", "1"]);
    assert_eq!(out["version"], 4, "{out}");
    let j = wait_settled(&agent, &name, "complete");
    assert_eq!(j["spec"]["env"]["VERSION"], "1");
    let out = agent.cli(&["rollout", "undo", &name, "--to-version", "99"]);
    out.assert_failure();
    assert!(out.stderr.contains("keeps no version 99"), "{out}");
}

#[test]
fn a_drained_node_is_emptied_and_gets_no_new_work() {
    require_demo_image();
    require_netns_support();
    let c = Cluster::start(
        3,
        ClusterOpts::default().args(&["--suspect-after", "5s", "--dead-after", "20s"]),
    );
    c.wait_for_nodes(3, FORM);
    let leader = c.wait_for_leader(FORM);
    let name = unique_name("drain");
    let file = write_manifest(
        &c.scratch_dir().join("manifests"),
        &name,
        &format!(
            "name: {name}\nreplicas: 6\nimage: {DEMO_IMAGE}\nports:\n  - container_port: 80\n"
        ),
    );
    c.node(leader)
        .cli_timeout(ROLLOUT, &["apply", "-f", file.to_str().unwrap()])
        .assert_success();
    // Drain a node other than the one we talk to, by name.
    let target = (leader + 1) % 3;
    let target_id = c.node(target).node_id().to_string();
    let on_target = |allocs: &[Value]| {
        allocs
            .iter()
            .filter(|a| a["node_id"] == target_id.as_str())
            .map(|a| a["id"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    let before = on_target(&c.allocs(leader, &name).unwrap());
    assert!(!before.is_empty(), "spread put nothing on node{target}");

    let t0 = Instant::now();
    let out = c.node(leader).cli_timeout(
        ROLLOUT,
        &["node", "drain", &format!("node{target}"), "--wait"],
    );
    out.assert_success();
    assert!(out.stdout.contains("holds no allocations"), "{out}");
    eprintln!(
        "drain moved {} replicas off node{target} in {:.1}s",
        before.len(),
        t0.elapsed().as_secs_f64()
    );
    let allocs = poll_until_ok("6 running replicas elsewhere", ROLLOUT, || {
        let a = c.allocs(leader, &name)?;
        let running = a
            .iter()
            .filter(|a| a["status"]["state"] == "running")
            .count();
        if a.len() == 6 && running == 6 {
            Ok(a)
        } else {
            Err(format!("{} allocations, {running} running", a.len()))
        }
    });
    assert!(on_target(&allocs).is_empty());
    poll_until("no containers left on the drained node", ROLLOUT, || {
        c.running_containers_on(target, &name)
            .is_empty()
            .then_some(())
    });

    // Every node lists it as drained (the others learn it from the leader).
    for i in 0..3 {
        let nodes = poll_until_ok(&format!("node{i} lists node{target} drained"), FORM, || {
            let nodes = c.nodes(i)?;
            let drained: Vec<bool> = nodes
                .iter()
                .map(|n| n["id"] == target_id.as_str() && n["drained"] == true)
                .collect();
            if drained.iter().filter(|d| **d).count() == 1 {
                Ok(nodes)
            } else {
                Err(summarize_nodes(&nodes))
            }
        });
        assert_eq!(
            nodes.iter().filter(|n| n["drained"] == true).count(),
            1,
            "{}",
            summarize_nodes(&nodes)
        );
    }
    let table = c.node(target).cli(&["node", "ls"]);
    table.assert_success();
    assert!(table.stdout.contains("ready,drained"), "{table}");

    // New work avoids it.
    c.node(leader).cli(&["scale", &name, "9"]).assert_success();
    let allocs = poll_until_ok("9 running replicas", ROLLOUT, || {
        let a = c.allocs(leader, &name)?;
        let running = a
            .iter()
            .filter(|a| a["status"]["state"] == "running")
            .count();
        if a.len() == 9 && running == 9 {
            Ok(a)
        } else {
            Err(format!("{} allocations, {running} running", a.len()))
        }
    });
    assert!(
        on_target(&allocs).is_empty(),
        "a replica landed on the drained node"
    );

    // Undrained, it is a normal node again.
    let out = c.node(leader).cli_json(&["node", "undrain", &target_id]);
    assert_eq!(out["drained"], false, "{out}");
    poll_until_ok("node ls shows it undrained", FORM, || {
        let nodes = c.nodes(leader)?;
        if nodes.iter().all(|n| n["drained"] == false) {
            Ok(())
        } else {
            Err(summarize_nodes(&nodes))
        }
    });
    let out = c.node(leader).cli(&["node", "drain", "no-such-node"]);
    out.assert_failure();
    assert!(out.stderr.contains("no node has the id or name"), "{out}");
}
