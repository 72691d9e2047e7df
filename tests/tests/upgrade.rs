//! Upgrades in place (issue "versioned wire and disk"): a data dir of
//! Skein 0.1.0 opens in this build with its jobs and their containers
//! adopted; a cluster of the previous release is upgraded node by node
//! while a job runs and a writer writes, and a node is downgraded again.
//! Real `skein` processes of earlier commits of this repository (built by
//! `scripts/build-old.sh`), real containers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use skein_e2e::old::{skein_at, PREVIOUS, V0_1_0};
use skein_e2e::*;

const WAIT: Duration = Duration::from_secs(90);
const STOP_BOUND: Duration = Duration::from_secs(10);

fn job_yaml(name: &str, replicas: u32) -> String {
    format!(
        "name: {name}\nreplicas: {replicas}\nimage: {DEMO_IMAGE}\nports:\n  - container_port: 80\n\
         resources:\n  requests: {{ cpu: 10m, memory: 8Mi }}\n"
    )
}

/// Ids of the running containers of `job`, sorted, as Docker lists them.
fn running(agent: &Agent, job: &str) -> Vec<String> {
    let mut ids = agent.job_containers(job);
    ids.retain(|id| container_inspect(id)["State"]["Running"] == true);
    ids.sort();
    ids
}

#[test]
fn a_0_1_0_data_dir_opens_with_its_jobs_and_adopts_their_containers() {
    require_demo_image();
    let old = skein_at(V0_1_0);
    let mut agent = Agent::start(
        AgentOpts::default()
            .arg("--container-dns")
            .arg("none")
            .bin(old),
    );
    let name = unique_name("v010");
    let file = agent.write_manifest("job.yaml", &job_yaml(&name, 2));
    agent
        .cli(&["apply", "-f", file.to_str().expect("utf-8 path")])
        .assert_success();
    let before = poll_until("2 replicas under 0.1.0", WAIT, || {
        let ids = running(&agent, &name);
        (ids.len() == 2).then_some(ids)
    });
    let status = agent.terminate(STOP_BOUND);
    assert!(
        status.is_some_and(|s| s.success()),
        "{}",
        agent.log_tail(30)
    );

    agent.set_bin(skein_bin());
    agent.start_again();
    poll_until("the job runs under this build", WAIT, || {
        let v = agent.cli_json(&["job", "status", &name]);
        (v["running"] == 2).then_some(())
    });
    assert_eq!(
        running(&agent, &name),
        before,
        "containers adopted, none replaced"
    );
    let log = agent.log_tail(200);
    assert!(
        log.contains("migrated the raft database from Skein 0.1.0"),
        "{log}"
    );
    assert!(agent.data_dir().join("raft.redb.0.1.0").exists());
    // And writes work on the migrated state.
    let file = agent.write_manifest("job.yaml", &job_yaml(&name, 3));
    agent
        .cli(&["apply", "-f", file.to_str().expect("utf-8 path")])
        .assert_success();
    poll_until("scaled to 3", WAIT, || {
        (running(&agent, &name).len() == 3).then_some(())
    });
}
/// Writes registry credentials (cheap acknowledged writes, no containers)
/// through the nodes in turn (their API addresses change as they restart:
/// read from each data dir) until stopped; pushes the servers acknowledged.
fn writer(dirs: Vec<std::path::PathBuf>, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<String>>>) {
    let mut i = 0u32;
    while !stop.load(Ordering::Relaxed) && i < 10_000 {
        i += 1;
        let dir = &dirs[i as usize % dirs.len()];
        let Ok(api) = std::fs::read_to_string(dir.join("api.addr")) else {
            continue;
        };
        let server = format!("w{i}.upgrade.test:5000");
        let mut cmd = std::process::Command::new(skein_bin());
        cmd.args(["--api", api.trim(), "registry", "login", &server, "-u", "u"])
            .arg("--password-stdin");
        let out = skein_e2e::registry::run_with_stdin(cmd, b"pw\n", Duration::from_secs(30));
        if out.success() {
            acked.lock().expect("lock").push(server);
        }
    }
}

/// Waits until `agent` sees three ready nodes and a leader.
fn wait_whole(agent: &Agent, what: &str) {
    poll_until(what, WAIT, || {
        let nodes = agent.cli_json(&["node", "ls"]);
        let nodes = nodes.as_array()?;
        let status = agent.status();
        (nodes.len() == 3
            && nodes.iter().all(|n| n["health"] == "ready")
            && status["leader_id"].is_string())
        .then_some(())
    });
}

#[test]
fn rolling_upgrade_from_the_previous_release_then_a_downgrade() {
    require_demo_image();
    let previous = skein_at(PREVIOUS);
    let common = |o: AgentOpts| o.steady().bin(previous.clone());
    let mut pair =
        LoopbackPair::start(common(AgentOpts::named("a")), common(AgentOpts::named("b")));
    let mut third = pair.join(common(AgentOpts::named("c")));
    pair.a.wait_ready_voters(3, WAIT);
    let name = unique_name("roll");
    let file = pair.a.write_manifest("job.yaml", &job_yaml(&name, 6));
    pair.a
        .cli(&["apply", "-f", file.to_str().expect("utf-8 path")])
        .assert_success();
    let all_running = |agents: [&Agent; 3]| {
        let mut ids: Vec<String> = agents.iter().flat_map(|a| running(a, &name)).collect();
        ids.sort();
        ids.dedup();
        ids
    };
    let before = poll_until("6 replicas", WAIT, || {
        let ids = all_running([&pair.a, &pair.b, &third]);
        (ids.len() == 6).then_some(ids)
    });
    let mark = pair.a.cli_json(&["events", "-o", "json", "--tail", "1"]);
    let after_ms = mark
        .as_array()
        .and_then(|a| a.last())
        .and_then(|e| e["time_ms"].as_u64())
        .unwrap_or(0);

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let w = {
        let dirs = [&pair.a, &pair.b, &third]
            .iter()
            .map(|a| a.data_dir().to_path_buf())
            .collect();
        let (stop, acked) = (stop.clone(), acked.clone());
        std::thread::spawn(move || writer(dirs, stop, acked))
    };

    let head = skein_bin();
    for agent in [&mut pair.a, &mut pair.b, &mut third] {
        let status = agent.terminate(STOP_BOUND);
        assert!(
            status.is_some_and(|s| s.success()),
            "{}",
            agent.log_tail(30)
        );
        agent.set_bin(head.clone());
        agent.start_again();
        wait_whole(agent, "the upgraded node back in a whole cluster");
    }
    // Every node runs this build: the cluster's schema moves up.
    poll_until("cluster schema raised", WAIT, || {
        let current = skein_protocol::codec::Schema::CURRENT.to_string();
        (pair.a.status()["cluster_schema"] == current.as_str()).then_some(())
    });
    let n = acked.lock().expect("lock").len();
    poll_until("writes after the upgrade", WAIT, || {
        (acked.lock().expect("lock").len() >= n + 5).then_some(())
    });
    stop.store(true, Ordering::Relaxed);
    w.join().expect("writer");

    let now_running = all_running([&pair.a, &pair.b, &third]);
    if now_running != before {
        let ev = pair.a.cli(&["events", "--tail", "200"]);
        eprintln!("{}", ev.stdout);
        for a in [&pair.a, &pair.b, &third] {
            for l in a.log_tail(2000).lines().filter(|l| {
                l.contains("remov")
                    || l.contains("replac")
                    || l.contains("creat")
                    || l.contains("adopt")
            }) {
                eprintln!("{}: {l}", a.node_id());
            }
        }
    }
    assert_eq!(now_running, before, "no replica was restarted or replaced");
    let events = pair
        .a
        .cli_json(&["events", "-o", "json", "--kind", "node_down,restarted"]);
    let bad: Vec<&Value> = events
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["time_ms"].as_u64().unwrap_or(0) > after_ms)
                .collect()
        })
        .unwrap_or_default();
    assert!(
        bad.is_empty(),
        "no node declared dead, no replica restarted: {bad:?}"
    );
    let acked = acked.lock().expect("lock").clone();
    let stored = pair.a.cli_json(&["registry", "ls", "-o", "json"]);
    let stored: Vec<&str> = stored
        .as_array()
        .map(|a| a.iter().filter_map(|r| r["server"].as_str()).collect())
        .unwrap_or_default();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|s| !stored.contains(&s.as_str()))
        .collect();
    eprintln!(
        "{} writes acknowledged during the upgrade, {} lost",
        acked.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");

    // Downgrade one node: the cluster now writes schema it cannot read, so
    // it must refuse with a message that says so (or, had nothing moved,
    // work).
    third.terminate(STOP_BOUND);
    third.set_bin(previous.clone());
    let refused = |t: &mut Agent| {
        let log = t.log_tail(80);
        (!t.is_running() && log.contains("upgrade this node") && log.contains("schema"))
            .then_some(log)
    };
    match third.try_start_again(Duration::from_secs(30)) {
        Err(log) => assert!(
            log.contains("upgrade this node") && log.contains("schema"),
            "a refused downgrade says why: {log}"
        ),
        Ok(()) => {
            let log = poll_until("the downgraded node refuses", WAIT, || refused(&mut third));
            eprintln!(
                "downgrade refused: {}",
                log.lines()
                    .rev()
                    .find(|l| l.contains("schema"))
                    .unwrap_or("")
            );
        }
    }
    // The rest keeps running the job.
    assert_eq!(all_running([&pair.a, &pair.b, &third]), before);
}
