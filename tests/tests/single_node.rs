//! One node, real Docker: the foundation slice (issue #2).
//!
//! Each test starts its own agent (own data dir, API port and host-port
//! range), so the tests run in parallel; the harness removes every
//! container of an agent when the test ends, pass or fail.

use std::io::{Read, Write};
use std::time::Duration;

use skein_e2e::*;

const WAIT: Duration = Duration::from_secs(60);

/// The seed article's deployment.yaml, as shipped in examples/.
fn seed_deployment() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/deployment.yaml");
    std::fs::read_to_string(path).expect("examples/deployment.yaml")
}

/// Allocations of `job` as JSON.
fn allocs(agent: &Agent, job: &str) -> Vec<Value> {
    agent
        .cli_json(&["alloc", "ls", "--job", job])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn state(a: &Value) -> &str {
    a["status"]["state"].as_str().unwrap_or("")
}

#[test]
fn seed_deployment_runs_three_labelled_replicas_and_stop_removes_them() {
    require_demo_image();
    let agent = Agent::start(AgentOpts::default());
    let file = agent.write_manifest("deployment.yaml", &seed_deployment());
    let out = agent.cli(&[
        "apply",
        "-f",
        file.to_str().unwrap(),
        "--image",
        "my-nginx=skein-demo/web:latest",
    ]);
    out.assert_success();
    assert!(
        out.stdout.contains("my-nginx: 3/3 replicas running"),
        "{}",
        out.stdout
    );

    let ids = agent.job_containers("my-nginx");
    assert_eq!(ids.len(), 3, "three containers");
    let view = agent.cli_json(&["job", "status", "my-nginx"]);
    assert_eq!(view["running"], 3);
    for a in view["allocations"].as_array().unwrap() {
        let alloc = a["id"].as_str().unwrap();
        let cid = a["status"]["container_id"].as_str().unwrap();
        let labels = container_labels(cid);
        assert_eq!(labels["skein.job"], "my-nginx");
        assert_eq!(labels["skein.alloc"], alloc);
        assert_eq!(labels["skein.node"], agent.node_id());
        // Every replica answers on its published host port.
        let port = a["ports"][0]["host_port"].as_u64().unwrap();
        assert!(agent.port_range().contains(port as u16));
        let (code, body) = poll_until_ok("replica answers over HTTP", WAIT, || {
            http_get_url(&format!("http://127.0.0.1:{port}/"))
        });
        assert_eq!(code, 200);
        assert_eq!(body.trim(), format!("hello from {alloc}"));
    }

    agent.cli(&["job", "stop", "my-nginx"]).assert_success();
    poll_until("containers of the stopped job are removed", WAIT, || {
        agent.job_containers("my-nginx").is_empty().then_some(())
    });
    let jobs = agent.cli_json(&["job", "ls"]);
    assert_eq!(jobs[0]["stopped"], true);
    assert_eq!(jobs[0]["running"], 0);
}

#[test]
fn deployment_resources_become_docker_limits() {
    require_demo_image();
    let agent = Agent::start(AgentOpts::default());
    let name = unique_name("lim");
    let yaml = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: web
        image: skein-demo/web:latest
        env:
        - name: GREETING
          value: hi
        ports:
        - containerPort: 80
        resources:
          requests: {{cpu: 250m, memory: 32Mi}}
          limits: {{cpu: 500m, memory: 64Mi}}
"
    );
    let file = agent.write_manifest("limits.yaml", &yaml);
    agent
        .cli(&["apply", "-f", file.to_str().unwrap()])
        .assert_success();
    let ids = agent.job_containers(&name);
    assert_eq!(ids.len(), 2);
    for id in ids {
        let i = container_inspect(&id);
        assert_eq!(i["HostConfig"]["NanoCpus"], 500_000_000i64);
        assert_eq!(i["HostConfig"]["Memory"], 64i64 << 20);
        assert_eq!(i["HostConfig"]["CpuShares"], 256);
        let env: Vec<&str> = i["Config"]["Env"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        assert!(env.contains(&"GREETING=hi"), "{env:?}");
    }
    let nodes = agent.cli_json(&["node", "ls"]);
    assert_eq!(nodes[0]["allocated"]["cpu_millis"], 500);
}

#[test]
fn kill9_and_restart_adopts_the_same_containers() {
    require_demo_image();
    let mut agent = Agent::start(AgentOpts::default());
    let name = unique_name("adopt");
    let file = agent.write_manifest(
        "job.yaml",
        &format!("name: {name}\nreplicas: 2\nimage: skein-demo/web:latest\nports:\n  - container_port: 80\n"),
    );
    agent
        .cli(&["apply", "-f", file.to_str().unwrap()])
        .assert_success();
    let mut before = agent.job_containers(&name);
    before.sort();
    assert_eq!(before.len(), 2);

    agent.kill9();
    // The containers outlive the agent.
    for id in &before {
        assert_eq!(container_inspect(id)["State"]["Running"], true);
    }
    agent.restart();

    let view = poll_until("job runs again after restart", WAIT, || {
        let v = agent.cli_json(&["job", "status", &name]);
        (v["running"] == 2).then_some(v)
    });
    assert_eq!(view["desired"], 2);
    let mut after = agent.job_containers(&name);
    after.sort();
    assert_eq!(after, before, "the same containers are adopted, none added");
    // Several executor passes later, still exactly the same containers.
    poll_until("executor settled", WAIT, || {
        let a = allocs(&agent, &name);
        a.iter().all(|a| state(a) == "running").then_some(())
    });
    let mut again = agent.job_containers(&name);
    again.sort();
    assert_eq!(again, before);
}

#[test]
fn crashing_container_is_restarted_and_shows_its_exit_code() {
    require_demo_image();
    let agent = Agent::start(AgentOpts::default().arg("--max-restart-backoff").arg("1"));
    let name = unique_name("crash");
    let file = agent.write_manifest(
        "crash.yaml",
        &format!(
            "name: {name}\nimage: skein-demo/web:latest\ncommand: [/bin/sh, -c, 'echo boom; exit 3']\nrestart: on-failure\n"
        ),
    );
    let out = agent.cli(&["apply", "-f", file.to_str().unwrap()]);
    out.assert_failure();
    assert!(out.stderr.contains("exit code 3"), "{}", out.stderr);

    let a = poll_until("restarted at least twice", WAIT, || {
        let a = allocs(&agent, &name).pop()?;
        (a["status"]["restarts"].as_u64()? >= 2).then_some(a)
    });
    assert_eq!(a["status"]["exit_code"], 3);
    let table = agent.cli(&["alloc", "ls", "--job", &name]);
    table.assert_success();
    assert!(
        table.stdout.contains(" 3 "),
        "exit code column: {}",
        table.stdout
    );
    // Restarts reuse the container: logs accumulate.
    let id = a["id"].as_str().unwrap();
    let logs = agent.cli(&["logs", id]);
    logs.assert_success();
    assert!(logs.stdout.matches("boom").count() >= 2, "{}", logs.stdout);

    // A policy that does not restart ends the allocation as failed.
    let never = unique_name("never");
    let file = agent.write_manifest(
        "never.yaml",
        &format!("name: {never}\nimage: skein-demo/web:latest\ncommand: [/bin/sh, -c, 'exit 7']\nrestart: never\n"),
    );
    agent
        .cli(&["apply", "-f", file.to_str().unwrap(), "--detach"])
        .assert_success();
    let a = poll_until("allocation failed for good", WAIT, || {
        let a = allocs(&agent, &never).pop()?;
        (state(&a) == "failed").then_some(a)
    });
    assert_eq!(a["status"]["exit_code"], 7);
    assert_eq!(a["status"]["restarts"], 0);
}

#[test]
fn scale_restart_and_logs() {
    require_demo_image();
    let agent = Agent::start(AgentOpts::default());
    let name = unique_name("ops");
    let file = agent.write_manifest(
        "job.yaml",
        &format!("name: {name}\nreplicas: 1\nimage: skein-demo/web:latest\nports:\n  - container_port: 80\n"),
    );
    agent
        .cli(&["apply", "-f", file.to_str().unwrap()])
        .assert_success();
    let first = allocs(&agent, &name)[0].clone();
    let first_id = first["id"].as_str().unwrap().to_string();

    agent.cli(&["scale", &name, "3"]).assert_success();
    poll_until("3 replicas running", WAIT, || {
        let a = allocs(&agent, &name);
        (a.len() == 3 && a.iter().all(|a| state(a) == "running")).then_some(())
    });
    assert!(
        allocs(&agent, &name)
            .iter()
            .any(|a| a["id"] == first_id.as_str()),
        "scale keeps replicas"
    );
    agent.cli(&["scale", &name, "1"]).assert_success();
    poll_until("scaled down to 1 container", WAIT, || {
        (agent.job_containers(&name).len() == 1).then_some(())
    });

    // Restarting the job replaces its container.
    let old = agent.job_containers(&name);
    agent.cli(&["restart", &name]).assert_success();
    poll_until("container replaced", WAIT, || {
        let now = agent.job_containers(&name);
        (now.len() == 1
            && now != old
            && allocs(&agent, &name).iter().all(|a| state(a) == "running"))
        .then_some(())
    });

    // httpd -v logs each answered request ("response:200") to stderr.
    let port = first["ports"][0]["host_port"].as_u64().unwrap();
    poll_until_ok("replica answers", WAIT, || {
        http_get_url(&format!("http://127.0.0.1:{port}/"))
    });
    let out = poll_until("request shows in logs", WAIT, || {
        let o = agent.cli(&["logs", &first_id]);
        (o.success() && o.stdout.contains("response:200")).then_some(o)
    });
    assert!(out.stdout.contains("response:200"));
    agent.cli(&["logs", "nope-0-zzzzzz"]).assert_failure();
}

#[test]
fn bad_input_is_refused_with_location_and_changes_nothing() {
    require_demo_image();
    let agent = Agent::start(AgentOpts::default());
    let cases: &[(&str, &str, &str)] = &[
        ("malformed.yaml", "name: x\n  replicas: [1\n", "malformed.yaml:2:"),
        ("unknown.yaml", "name: x\nimage: skein-demo/web:latest\nreplica: 2\n", "unknown.yaml:3:1: replica: unknown field"),
        (
            "quantity.yaml",
            "name: x\nimage: skein-demo/web:latest\nresources:\n  requests:\n    memory: 12MB\n",
            "quantity.yaml:5:13: resources.requests.memory: \"12MB\" is not a memory quantity",
        ),
        ("negative.yaml", "name: x\nreplicas: -1\nimage: skein-demo/web:latest\n", "negative.yaml:2:11: replicas: must be 0 or more"),
        ("noimage.yaml", "name: x\nreplicas: 1\n", "noimage.yaml:1:1: image: an image is required"),
        (
            "k8s-typo.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replica: 2\n  template:\n    spec:\n      containers: [{name: x, image: skein-demo/web:latest}]\n",
            "k8s-typo.yaml:5:3: spec.replica: unknown field",
        ),
        (
            "missing-image.yaml",
            "name: x\nimage: skein-demo/does-not-exist:1\npull: never\n",
            "image skein-demo/does-not-exist:1 is not present on any eligible node, and its pull policy is never",
        ),
    ];
    for (file, yaml, expect) in cases {
        let path = agent.write_manifest(file, yaml);
        let out = agent.cli(&["apply", "-f", path.to_str().unwrap()]);
        out.assert_failure();
        assert!(
            out.stderr.contains(expect),
            "{file}: expected {expect:?} in {:?}",
            out.stderr
        );
    }
    // A file whose second document is bad applies nothing at all.
    let path = agent.write_manifest(
        "multi.yaml",
        "name: good\nimage: skein-demo/web:latest\n---\nname: bad\nimage: skein-demo/web:latest\nreplicas: -2\n",
    );
    let out = agent.cli(&["apply", "-f", path.to_str().unwrap()]);
    assert!(out.stderr.contains("multi.yaml:6:11"), "{}", out.stderr);

    // Straight to the API: invalid specs, oversized and malformed bodies.
    let (code, body) = agent.http_post(
        "/v1/jobs",
        br#"{"jobs":[{"name":"Bad_Name","replicas":1,"image":""}]}"#,
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        body.contains("jobs[0].name") && body.contains("jobs[0].image"),
        "{body}"
    );
    // An oversized body is refused once the limit is crossed; the server
    // answers without reading the rest, so read the answer after sending
    // just over the limit (a client that keeps writing gets EPIPE).
    let mut conn = std::net::TcpStream::connect(agent.api()).unwrap();
    conn.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        conn,
        "POST /v1/jobs HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        2 * 1024 * 1024
    )
    .unwrap();
    let _ = conn.write_all(&vec![b' '; 1024 * 1024 + 4096]);
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("larger than the 1048576 byte limit"),
        "{answer}"
    );
    let (code, _) = agent.http_post("/v1/jobs", b"{not json");
    assert_eq!(code, 400);
    let (code, _) = agent.http_post("/v1/jobs/x/scale", br#"{"replicas":-1}"#);
    assert_eq!(code, 400);

    // Nothing reached the state or Docker.
    assert_eq!(agent.cli_json(&["job", "ls"]), json!([]));
    assert_eq!(agent.cli_json(&["alloc", "ls"]), json!([]));
    assert!(agent.containers().is_empty());
    assert_eq!(
        agent.status()["last_applied"].as_u64(),
        Some(1),
        "only raft's own entry"
    );
}

#[test]
fn kubernetes_service_selects_its_deployment_and_publishes_a_node_port() {
    require_demo_image();
    let agent = Agent::start(AgentOpts::default().arg("--container-dns").arg("none"));
    let name = unique_name("k8s");
    let ports = reserve_port_range();
    let node_port = ports.first;
    let yaml = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: web
        image: skein-demo/web:latest
        ports:
        - {{name: http, containerPort: 80}}
        readinessProbe:
          httpGet: {{path: /, port: http}}
          periodSeconds: 1
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  type: NodePort
  selector: {{app: {name}}}
  ports:
  - port: 80
    targetPort: http
    nodePort: {node_port}
"
    );
    let file = agent.write_manifest("svc.yaml", &yaml);
    agent
        .cli(&["apply", "-f", file.to_str().unwrap()])
        .assert_success();
    let svc = poll_until("service with 2 ready endpoints", WAIT, || {
        let s = agent.cli_json(&["service", "status", &name]);
        (s["endpoints"].as_array()?.len() == 2).then_some(s)
    });
    assert_eq!(svc["publish"], node_port);
    assert_eq!(svc["job"], name.as_str());
    // The node port answers, from both replicas in turn.
    let mut seen = std::collections::BTreeSet::new();
    poll_until("both replicas answer through the node port", WAIT, || {
        let (_, body) = http_get_url(&format!("http://127.0.0.1:{node_port}/")).ok()?;
        seen.insert(body.trim().to_string());
        (seen.len() == 2).then_some(())
    });
    assert!(
        seen.iter()
            .all(|b| b.starts_with(&format!("hello from {name}-"))),
        "{seen:?}"
    );
}

#[test]
fn api_token_guards_writes_and_reads() {
    require_demo_image();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let agent = Agent::start(
        AgentOpts::default()
            .arg("--api-token-file")
            .arg(token_file.to_str().unwrap()),
    );
    let name = unique_name("auth");
    let file = agent.write_manifest(
        "job.yaml",
        &format!("name: {name}\nimage: skein-demo/web:latest\n"),
    );
    // Without the token: refused, nothing changes.
    let out = agent.cli(&["apply", "-f", file.to_str().unwrap()]);
    out.assert_failure();
    assert!(
        out.stderr.contains("requires an API token"),
        "{}",
        out.stderr
    );
    let (code, _) = agent.http_post("/v1/jobs", br#"{"jobs":[]}"#);
    assert_eq!(code, 401);
    let (code, _) = agent.http_get("/v1/jobs");
    assert_eq!(code, 401, "reads need the token too without --open-reads");
    let wrong = agent.cli(&["--token", "nope", "job", "ls"]);
    assert!(
        wrong.stderr.contains("the API token is wrong"),
        "{}",
        wrong.stderr
    );
    assert!(agent.containers().is_empty());
    // With it: works.
    agent
        .cli(&["--token", "s3cret", "apply", "-f", file.to_str().unwrap()])
        .assert_success();
    let jobs = agent.cli_json(&["--token", "s3cret", "job", "ls"]);
    assert_eq!(jobs[0]["spec"]["name"], name.as_str());
    let (code, _) = agent.http_delete(&format!("/v1/jobs/{name}"));
    assert_eq!(code, 401);
    assert_eq!(
        agent.job_containers(&name).len(),
        1,
        "the refused stop changed nothing"
    );
}

#[test]
fn open_reads_let_gets_through_but_not_writes() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "t0k3n").unwrap();
    let agent = Agent::start(
        AgentOpts::default()
            .arg("--api-token-file")
            .arg(token_file.to_str().unwrap())
            .arg("--open-reads"),
    );
    let (code, _) = agent.http_get("/v1/jobs");
    assert_eq!(code, 200);
    let (code, _) = agent.http_get("/metrics");
    assert_eq!(code, 200);
    let (code, _) = agent.http_post("/v1/jobs/x/scale", br#"{"replicas":1}"#);
    assert_eq!(code, 401);
}

#[test]
fn plan_shows_changes_and_placements_without_doing_them() {
    require_demo_image();
    let agent = Agent::start(AgentOpts::default());
    let name = unique_name("plan");
    let yaml = |n: u32| {
        format!("name: {name}\nreplicas: {n}\nimage: skein-demo/web:latest\nports:\n  - container_port: 80\n")
    };
    let file = agent.write_manifest("p2.yaml", &yaml(2));
    let plan = agent.cli_json(&["plan", "-f", file.to_str().unwrap()]);
    assert_eq!(plan["jobs"][0]["change"], "created");
    assert_eq!(plan["start"].as_array().unwrap().len(), 2);
    assert!(plan["start"][0]["ports"][0]["host_port"].as_u64().is_some());
    // Nothing happened.
    assert_eq!(agent.cli_json(&["job", "ls"]), json!([]));
    assert!(agent.containers().is_empty());
    let table = agent.cli(&["plan", "-f", file.to_str().unwrap()]);
    assert!(
        table.stdout.contains("would be created"),
        "{}",
        table.stdout
    );

    agent
        .cli(&["apply", "-f", file.to_str().unwrap()])
        .assert_success();
    let same = agent.cli_json(&["plan", "-f", file.to_str().unwrap()]);
    assert_eq!(same["jobs"][0]["change"], "unchanged");
    assert_eq!(same["start"], json!([]));
    let more = agent.write_manifest("p3.yaml", &yaml(3));
    let grow = agent.cli_json(&["plan", "-f", more.to_str().unwrap()]);
    assert_eq!(grow["start"].as_array().unwrap().len(), 1);
    assert_eq!(grow["stop"], json!([]));
    assert_eq!(agent.job_containers(&name).len(), 2, "plan changed nothing");
    // An impossible plan says why.
    let bad = agent.write_manifest(
        "bad.yaml",
        &format!("name: {name}-x\nimage: nope:1\npull: never\n"),
    );
    let out = agent.cli(&["plan", "-f", bad.to_str().unwrap()]);
    out.assert_failure();
    assert!(
        out.stderr.contains("image nope:1 is not present"),
        "{}",
        out.stderr
    );
}

#[test]
fn published_ports_only_from_the_publish_range_never_a_listener_never_twice() {
    require_demo_image();
    let agent = Agent::start(
        AgentOpts::default()
            .arg("--publish-range")
            .arg("30000-32767"),
    );
    let refused = |file: &str, yaml: &str, expect: &str| {
        let path = agent.write_manifest(file, yaml);
        let out = agent.cli(&["apply", "-f", path.to_str().unwrap()]);
        out.assert_failure();
        assert!(
            out.stderr.contains(expect),
            "{file}: {expect:?} not in {}",
            out.stderr
        );
    };
    let svc = |name: &str, port: u16| {
        format!(
            "name: {name}\nimage: skein-demo/web:latest\nports: [{{container_port: 80}}]\n\
             service: {{name: {name}, publish: {port}}}\n"
        )
    };
    refused(
        "ssh.yaml",
        &svc("ssh", 22),
        "port 22: it is outside the publish range 30000-32767",
    );
    refused(
        "k8s.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: k}\nspec:\n  selector: {matchLabels: {app: k}}\n  template:\n    metadata: {labels: {app: k}}\n    spec:\n      containers: [{name: k, image: skein-demo/web:latest, ports: [{containerPort: 80}]}]\n---\napiVersion: v1\nkind: Service\nmetadata: {name: k}\nspec:\n  type: NodePort\n  selector: {app: k}\n  ports: [{port: 80, nodePort: 22}]\n",
        "port 22: it is outside the publish range",
    );
    let wide = Agent::start(AgentOpts::default().arg("--publish-range").arg("1-65535"));
    let wide_api: u16 = wide.api().rsplit(':').next().unwrap().parse().unwrap();
    let path = wide.write_manifest("api.yaml", &svc("own", wide_api));
    let out = wide.cli(&["apply", "-f", path.to_str().unwrap()]);
    out.assert_failure();
    assert!(
        out.stderr.contains("it is the API port of node"),
        "{}",
        out.stderr
    );
    drop(wide);

    // One job per published port: the second is refused, the first serves.
    let port = 31000 + u16::try_from(std::process::id() % 1500).unwrap();
    let first = unique_name("first");
    let path = agent.write_manifest("first.yaml", &svc(&first, port));
    agent
        .cli_timeout(
            Duration::from_secs(60),
            &["apply", "-f", path.to_str().unwrap()],
        )
        .assert_success();
    let second = unique_name("second");
    refused(
        "second.yaml",
        &svc(&second, port),
        &format!("job {first} publishes it already"),
    );
    let jobs = agent.cli_json(&["job", "ls"]);
    assert_eq!(jobs.as_array().map(Vec::len), Some(1), "{jobs}");
}
