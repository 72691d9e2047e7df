//! Graceful shutdown (issue "supervised tasks"): SIGTERM stops an agent
//! with exit 0 within its 5 s bound, leaves its containers running for the
//! next start to adopt, and a leader that stops hands leadership to a
//! voter. Real `skein agent` processes on loopback, sharing this machine's
//! Docker daemon.

use std::time::{Duration, Instant};

use skein_e2e::*;

const WAIT: Duration = Duration::from_secs(60);
/// What the agent guarantees from SIGTERM to exit (`agent::SHUTDOWN_BOUND`
/// plus the runtime's last half second).
const STOP_BOUND: Duration = Duration::from_secs(5);

fn job_yaml(name: &str, replicas: u32) -> String {
    format!(
        "name: {name}\nreplicas: {replicas}\nimage: {DEMO_IMAGE}\nports:\n  - container_port: 80\n"
    )
}

#[test]
fn sigterm_exits_zero_in_time_leaves_containers_and_a_restart_adopts_them() {
    require_demo_image();
    let mut agent = Agent::start(AgentOpts::default().arg("--container-dns").arg("none"));
    let name = unique_name("term");
    let file = agent.write_manifest("job.yaml", &job_yaml(&name, 1));
    agent
        .cli(&["apply", "-f", file.to_str().expect("utf-8 path")])
        .assert_success();
    let before = agent.job_containers(&name);
    assert_eq!(before.len(), 1, "{before:?}");

    let t0 = Instant::now();
    let status = agent.terminate(STOP_BOUND);
    let took = t0.elapsed();
    eprintln!("SIGTERM to exit: {:.2}s", took.as_secs_f64());
    let status = status.unwrap_or_else(|| {
        panic!(
            "no exit within {STOP_BOUND:?} of SIGTERM\n{}",
            agent.log_tail(40)
        )
    });
    assert!(status.success(), "exit {status}\n{}", agent.log_tail(40));
    let log = agent.log_tail(40);
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    // The container outlives the agent.
    assert_eq!(
        container_inspect(&before[0])["State"]["Running"],
        true,
        "container stopped with the agent"
    );

    agent.restart();
    poll_until("job runs again after restart", WAIT, || {
        let v = agent.cli_json(&["job", "status", &name]);
        (v["running"] == 1).then_some(())
    });
    assert_eq!(
        agent.job_containers(&name),
        before,
        "the same container is adopted, none added"
    );
}

/// Index of the agent that `agents[on]` says leads.
fn leader_of(agents: &[&mut Agent], on: usize) -> Option<usize> {
    let (code, body) = agents[on].http_get("/v1/status");
    if code != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    let id = v["leader_id"].as_str()?;
    agents.iter().position(|a| a.node_id() == id)
}

#[test]
fn sigterm_to_the_leader_lets_the_others_elect_one_and_take_writes() {
    require_demo_image();
    let mut pair = LoopbackPair::start(
        AgentOpts::named("a").steady(),
        AgentOpts::named("b").steady(),
    );
    let mut third = pair.join(AgentOpts::named("c").steady());
    let mut agents: Vec<&mut Agent> = vec![&mut pair.a, &mut pair.b, &mut third];
    agents[0].wait_ready_voters(3, WAIT);
    let leader = poll_until("a leader", WAIT, || leader_of(&agents, 0));
    // `node ls` counts the voters of a joint configuration too: stopping the
    // only old voter then would leave the others unable to elect. The
    // leader says when the change committed in full.
    poll_until("the voter change committed", WAIT, || {
        agents[leader]
            .log_tail(400)
            .lines()
            .any(|l| l.contains("raft voters changed") && l.matches(',').count() >= 2)
            .then_some(())
    });
    let old_leader = agents[leader].node_id().to_string();

    let t0 = Instant::now();
    let status = agents[leader].terminate(STOP_BOUND);
    let stopped = t0.elapsed();
    let status = status.unwrap_or_else(|| panic!("leader did not exit within {STOP_BOUND:?}"));
    assert!(
        status.success(),
        "leader exit {status}\n{}",
        agents[leader].log_tail(40)
    );
    let log = agents[leader].log_tail(60);
    assert!(
        log.contains("handed leadership over"),
        "the stopping leader hands over to a voter: {log}"
    );
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    let new_leader = poll_until("a new leader on both survivors", WAIT, || {
        let seen: Vec<Option<usize>> = survivors.iter().map(|&i| leader_of(&agents, i)).collect();
        match seen.as_slice() {
            [Some(a), Some(b)] if a == b && *a != leader => Some(*a),
            _ => None,
        }
    });
    let elected = t0.elapsed();
    assert_ne!(agents[new_leader].node_id(), old_leader);

    // A write through the survivor that does not lead (forwarded).
    let writer = survivors
        .iter()
        .copied()
        .find(|&i| i != new_leader)
        .expect("two survivors");
    let job = unique_name("after");
    let file = agents[writer].write_manifest("after.yaml", &job_yaml(&job, 1));
    let file = file.to_str().expect("utf-8 path").to_string();
    if let Err((_, last)) = agents[writer].apply_until_accepted(&file, WAIT) {
        panic!("write after the leader stopped: {last}");
    }
    let wrote = t0.elapsed();
    eprintln!(
        "leader SIGTERM: exited after {:.2}s, new leader seen after {:.2}s, write committed after {:.2}s",
        stopped.as_secs_f64(),
        elected.as_secs_f64(),
        wrote.as_secs_f64()
    );
}
