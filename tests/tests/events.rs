//! Events and live usage across hosts (real processes in network
//! namespaces, real containers): `skein events -f` on one node shows the
//! placement, start and exit (with its code) of a container on another
//! node, then a dead node and a new leader (and, once it is back, the
//! history it copied from a peer); `skein top` and `/metrics` show the CPU
//! and memory a busy container on another node really uses.

use std::time::{Duration, Instant};

use skein_e2e::*;

const WAIT: Duration = Duration::from_secs(60);

/// Collects the JSON events a `skein events -f -o json` stream prints until
/// `done` holds for all of them so far; panics with them on timeout.
fn collect_until(
    stream: &LineStream,
    seen: &mut Vec<Value>,
    what: &str,
    done: impl Fn(&[Value]) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(seen) {
        let Some(line) = stream.next_line(deadline) else {
            let kinds: Vec<String> = seen
                .iter()
                .map(|e| format!("{} {} {}", e["kind"], e["node"], e["message"]))
                .collect();
            panic!(
                "timed out waiting for {what}; events seen:\n{}",
                kinds.join("\n")
            );
        };
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not one JSON event per line ({e}): {line}"));
        seen.push(v);
    }
}

fn has(seen: &[Value], kind: &str, f: impl Fn(&Value) -> bool) -> bool {
    seen.iter().any(|e| e["kind"] == kind && f(e))
}

/// The value of the first sample of `metric` whose labels contain `label`.
fn sample(metrics: &str, metric: &str, label: &str) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| l.starts_with(metric) && l.contains(label))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn events_top_and_usage_metrics_across_nodes() {
    require_demo_image();
    let mut c = Cluster::start(3, ClusterOpts::default().zones(&["a", "b", "c"]));
    c.wait_for_nodes(3, WAIT);
    let leader = c.wait_for_leader(WAIT);
    // Jobs run on node1 (zone b); the observer is neither node1 nor the
    // leader, so that it survives the leader's death and only hears of
    // node1's containers over the mesh.
    let observer = (0..3).find(|&i| i != 1 && i != leader).expect("3 nodes");
    let node1_id = c.node(1).node_id().to_string();
    let stream = c
        .node(observer)
        // Recent history too: the stream may start after the placements
        // on a loaded machine; the checks below pick this test's events
        // (unique job names, or those after a mark).
        .cli_stream(&["-o", "json", "events", "-f", "--tail", "500"]);

    let crash = unique_name("crash");
    let busy = unique_name("busy");
    let file = c.node(leader).write_manifest(
        "jobs.yaml",
        &format!(
            "name: {crash}\nimage: skein-demo/web:latest\nconstraints: {{zone: b}}\n\
             command: [/bin/sh, -c, 'sleep 3; exit 3']\nrestart: never\n\
             ---\n\
             name: {busy}\nimage: skein-demo/web:latest\nconstraints: {{zone: b}}\n\
             command: [/bin/sh, -c, 'while :; do :; done']\n\
             resources:\n  requests: {{cpu: 100m, memory: 32Mi}}\n  limits: {{cpu: 300m, memory: 64Mi}}\n"
        ),
    );
    c.node(leader)
        .cli_timeout(WAIT, &["apply", "-f", file.to_str().unwrap()])
        .assert_success();

    // Placement (by the leader), start and exit code (by node1), all
    // heard on the observer.
    let mut seen = Vec::new();
    let of_crash = |e: &Value| e["job"] == crash.as_str();
    collect_until(&stream, &mut seen, "placed, started and exited", |s| {
        has(s, "placed", |e| of_crash(e) && e["node"] == "node1")
            && has(s, "started", |e| {
                of_crash(e) && e["node"] == "node1" && e["origin"] == node1_id.as_str()
            })
            && has(s, "exited", |e| of_crash(e) && e["exit_code"] == 3)
    });
    let exited = seen.iter().find(|e| e["kind"] == "exited").expect("exited");
    assert!(
        exited["message"]
            .as_str()
            .is_some_and(|m| m.contains("code 3")),
        "{exited}"
    );
    // The same events in the non-following form, filtered by job and kind.
    let listed = c
        .node(observer)
        .cli_json(&["events", "--job", &crash, "--kind", "exited"]);
    let listed = listed.as_array().expect("array");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["exit_code"], 3);

    // Live usage of node1's busy container, seen from the observer.
    let top = poll_until("top shows the busy container using CPU", WAIT, || {
        let t = c.try_cli_json(observer, &["top"]).ok()?;
        let row = t["containers"]
            .as_array()?
            .iter()
            .find(|r| r["job"] == busy.as_str())?
            .clone();
        (row["cpu_millis"].as_u64()? >= 100).then_some((t, row))
    });
    let (t, row) = top;
    eprintln!("node{observer} sees node1's busy container as {row}");
    assert_eq!(row["node"], "node1", "{row}");
    assert!(
        row["cpu_millis"].as_u64().unwrap() <= 450,
        "a container limited to 300m cannot use more: {row}"
    );
    assert!(row["memory_bytes"].as_u64().unwrap() > 0, "{row}");
    assert_eq!(row["memory_limit_bytes"], 64 << 20, "{row}");
    let n1 = t["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "node1")
        .unwrap();
    assert!(n1["used_cpu_millis"].as_u64().unwrap() >= 100, "{t}");
    let table = c.node(observer).cli(&["top", "--once"]);
    table.assert_success();
    assert!(table.stdout.contains(&busy), "{}", table.stdout);

    // Node1's /metrics: the container's measured usage.
    let alloc = row["alloc"].as_str().unwrap().to_string();
    let label = format!("alloc=\"{alloc}\"");
    let (code, m) = c.node(1).http_get("/metrics");
    assert_eq!(code, 200);
    assert!(
        sample(&m, "skein_container_cpu_millicores", &label).is_some_and(|v| v > 0.0),
        "{m}"
    );
    assert!(
        sample(&m, "skein_container_memory_bytes", &label).is_some_and(|v| v > 0.0),
        "{m}"
    );
    assert!(sample(&m, "skein_container_network_receive_bytes_total", &label).is_some());
    // The leader's: placements and planning time; every node's: libp2p.
    let (_, lm) = c.node(leader).http_get("/metrics");
    assert!(
        sample(&lm, "skein_scheduler_placements_total", "").is_some_and(|v| v >= 2.0),
        "{lm}"
    );
    assert!(
        sample(&lm, "skein_scheduler_plan_duration_seconds_count", "").is_some_and(|v| v >= 1.0),
        "{lm}"
    );
    assert!(
        sample(&lm, "libp2p_swarm_connections_established_total", "").is_some_and(|v| v >= 1.0),
        "{lm}"
    );

    // The leader dies: a new leader reports its election and the death.
    let old = format!("node{leader}");
    let mark = seen.len();
    c.kill(leader);
    collect_until(&stream, &mut seen, "leader_elected and node_down", |s| {
        let after = &s[mark.min(s.len())..];
        has(after, "leader_elected", |e| e["node"] != old.as_str())
            && has(after, "node_down", |e| e["node"] == old.as_str())
    });

    // It comes back with an empty journal and copies a peer's history:
    // the exit it saw before it died is listed again, and its return is
    // an event too.
    c.restart(leader);
    poll_until(
        "the restarted node lists the exit from before",
        WAIT,
        || {
            let l = c
                .try_cli_json(leader, &["events", "--job", &crash, "--kind", "exited"])
                .ok()?;
            (l.as_array()?.len() == 1).then_some(())
        },
    );
    let mark = seen.len();
    collect_until(&stream, &mut seen, "node_up of the restarted node", |s| {
        has(&s[mark.min(s.len())..], "node_up", |e| {
            e["node"] == old.as_str()
        })
    });
}

#[test]
fn bad_event_queries_are_refused_with_what_is_allowed() {
    let agent = Agent::start(AgentOpts::default().arg("--container-dns").arg("none"));
    let (code, body) = agent.http_get("/v1/events?kind=started,bogus");
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("unknown event kind \\\"bogus\\\"") && body.contains("node_down"),
        "names the bad kind and the allowed ones: {body}"
    );
    let (code, body) = agent.http_get("/v1/events?after=x");
    assert_eq!(code, 400, "{body}");
    let (code, body) = agent.http_get("/v1/events?colour=red");
    assert_eq!(code, 400, "unknown parameters are refused: {body}");
    // The CLI refuses before asking the node.
    let o = agent.cli(&["events", "--kind", "bogus"]);
    assert!(!o.success());
    assert!(
        o.stderr.contains("bogus") && o.stderr.contains("leader_elected"),
        "{o}"
    );
    // A good query still works (the node reported its own election).
    let ok = agent.cli_json(&["events", "--kind", "leader_elected"]);
    assert!(!ok.as_array().unwrap().is_empty(), "{ok}");
}
