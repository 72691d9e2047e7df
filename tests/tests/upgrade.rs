//! Upgrades in place (issue "versioned wire and disk"): a data dir of
//! Skein 0.1.0 opens in this build with its jobs and their containers
//! adopted; a cluster of the previous release is upgraded node by node
//! while a job runs and a writer writes, and a node is downgraded again.
//! Real `skein` processes of earlier commits of this repository (built by
//! `scripts/build-old.sh`), real containers.

use std::time::Duration;

use skein_e2e::old::{skein_at, V0_1_0};
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
