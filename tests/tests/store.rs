//! Durability of what a node stores (issue #13): size limits that keep an
//! acknowledged state loadable, job deletion, a full disk (a real tmpfs),
//! a data dir deleted under a running node, and a copied data dir run
//! beside its original.

use std::time::Duration;

use skein_e2e::*;

const WAIT: Duration = Duration::from_secs(60);

/// An apply request for one job with no replicas (nothing to run) whose
/// args make its spec about `bytes` large.
fn job_body(name: &str, bytes: usize) -> Vec<u8> {
    json!({"jobs": [{
        "name": name, "replicas": 0, "image": "busybox:latest",
        "args": ["x".repeat(bytes)],
    }]})
    .to_string()
    .into_bytes()
}

fn job_names(agent: &Agent) -> Vec<String> {
    let (code, body) = agent.http_get("/v1/jobs");
    assert_eq!(code, 200, "{body}");
    let jobs: Value = serde_json::from_str(&body).unwrap();
    let mut names: Vec<String> = jobs
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|j| j["spec"]["name"].as_str().map(str::to_string))
        .collect();
    names.sort();
    names
}

fn body_json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// Before: 24 jobs of 1 MB each were all acknowledged, and the node could
/// not restart (`cannot restore state machine … LimitExceeded`). Now each
/// limit refuses with 413 and its figures, and what was acknowledged loads.
#[test]
fn writes_beyond_the_limits_are_refused_and_what_was_accepted_survives_restart() {
    let mut a = Agent::start(AgentOpts::named("limits"));
    a.wait_for_leader(WAIT);

    // Per request: the API body limit.
    let (code, body) = a.http_post("/v1/jobs", &job_body("huge", 1_100_000));
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("1048576"), "{body}");

    // Per job: 256 KiB encoded.
    let (code, body) = a.http_post("/v1/jobs", &job_body("big", 300 * 1024));
    assert_eq!(code, 413, "{body}");
    let err = body_json(&body);
    assert!(body.contains("262144"), "{body}");
    assert_eq!(err["outcome"], "not_applied", "{body}");

    // The state quota: 48 MiB (from cluster schema 1.2, which a lone node
    // reaches at once). Jobs of 200 KiB fill it after ~245.
    let mut accepted = Vec::new();
    let refusal = loop {
        let name = format!("j{}", accepted.len());
        let (code, body) = a.http_post("/v1/jobs", &job_body(&name, 200 * 1024));
        match code {
            200 => accepted.push(name),
            413 => break body,
            other => panic!("unexpected {other}: {body}"),
        }
        assert!(accepted.len() < 300, "the quota never refused a write");
    };
    assert!(accepted.len() >= 200, "refused too early: {refusal}");
    assert!(refusal.contains("quota"), "{refusal}");
    assert!(refusal.contains("50331648"), "{refusal}");
    let (code, metrics) = a.http_get("/metrics");
    assert_eq!(code, 200);
    assert!(
        metrics.contains("skein_state_quota_bytes 50331648"),
        "{metrics}"
    );

    // Deleting makes room again.
    a.cli(&["job", "delete", "j0"]).assert_success();
    let (code, body) = a.http_post("/v1/jobs", &job_body("after-delete", 100 * 1024));
    assert_eq!(code, 200, "{body}");
    accepted.retain(|n| n != "j0");
    accepted.push("after-delete".into());
    accepted.sort();

    a.restart();
    a.wait_for_leader(WAIT);
    assert_eq!(job_names(&a), accepted);
}

/// `job stop` keeps the job; `job delete` removes it with its containers,
/// allocations and history, and the deletion survives a restart.
#[test]
fn deleted_jobs_leave_the_state_and_their_containers_go() {
    require_demo_image();
    let mut a = Agent::start(
        AgentOpts::named("delete")
            .arg("--container-dns")
            .arg("none"),
    );
    a.wait_for_leader(WAIT);
    let name = unique_name("del");
    let manifest = a.write_manifest(
        "job.yaml",
        &format!("name: {name}\nreplicas: 1\nimage: {DEMO_IMAGE}\n"),
    );
    a.cli(&["apply", "-f", manifest.to_str().unwrap()])
        .assert_success();
    poll_until("a container of the job", WAIT, || {
        (!a.job_containers(&name).is_empty()).then_some(())
    });

    let out = a.cli(&["job", "delete", &name]);
    out.assert_success();
    assert!(out.stdout.contains("deleted"), "{}", out.stdout);
    assert!(!job_names(&a).contains(&name));
    let (code, _) = a.http_get(&format!("/v1/jobs/{name}"));
    assert_eq!(code, 404);
    let (code, _) = a.http_get(&format!("/v1/jobs/{name}/history"));
    assert_eq!(code, 404);
    let (_, allocs) = a.http_get(&format!("/v1/allocs?job={name}"));
    assert_eq!(body_json(&allocs), json!([]));
    poll_until("the job's containers removed", WAIT, || {
        a.job_containers(&name).is_empty().then_some(())
    });
    // Deleting again: not found, not a silent success.
    a.cli(&["job", "delete", &name]).assert_failure();

    a.restart();
    a.wait_for_leader(WAIT);
    assert!(!job_names(&a).contains(&name));
}

/// What became of writes made on a full disk.
#[derive(Debug, Default)]
struct Written {
    /// Answered 200.
    acknowledged: Vec<String>,
    /// Answered 504 `unknown`: may or may not be applied.
    unknown: Vec<String>,
    /// Answered 503 `not_applied`: must never show up.
    refused: Vec<String>,
}

/// Writes until one is refused as not applied (the disk is full, redb's
/// own free pages are used up and the node is degraded). Every failure
/// must say its outcome.
fn write_until_refused(a: &Agent, prefix: &str) -> Written {
    let mut w = Written::default();
    for i in 0..300 {
        let name = format!("{prefix}{i}");
        let (code, body) = a.http_post("/v1/jobs", &job_body(&name, 20 * 1024));
        let outcome = if code == 200 {
            String::new()
        } else {
            body_json(&body)["outcome"]
                .as_str()
                .unwrap_or("")
                .to_string()
        };
        match (code, outcome.as_str()) {
            (200, _) => w.acknowledged.push(name),
            (504, "unknown") => w.unknown.push(name),
            (503, "not_applied") => {
                w.refused.push(name);
                return w;
            }
            other => panic!("a failed write must say its outcome: {other:?} {body}"),
        }
    }
    panic!("300 writes of 20 KiB on a full 2 MiB disk: none refused: {w:?}");
}

fn storage_degraded(a: &Agent) -> bool {
    let (_, body) = a.http_get("/v1/status");
    body_json(&body)["storage"]["degraded"] == true
}

/// Before: on a full disk a write answered 503 ENOSPC was applied anyway
/// and survived restart, and after space was freed every write failed
/// until restart while the node said it led. Now a failed write is either
/// certainly not applied (503 `not_applied`) or reported as of unknown
/// outcome (504 `unknown`); the node shows the degradation and recovers
/// by itself once space returns.
#[test]
fn a_full_disk_degrades_the_node_and_it_recovers_by_itself() {
    let mut a = Agent::start(AgentOpts::named("full").data_tmpfs(2 * 1024 * 1024));
    a.wait_for_leader(WAIT);
    let (code, body) = a.http_post("/v1/jobs", &job_body("before", 1024));
    assert_eq!(code, 200, "{body}");

    // Fill the disk for real.
    let filler = a.data_dir().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }

    let written = write_until_refused(&a, "full");
    assert!(
        storage_degraded(&a),
        "refused but not degraded: {written:?}"
    );
    // Visible in `node ls`, the metrics and the events.
    let nodes = a.cli_json(&["node", "ls"]);
    assert_eq!(nodes[0]["storage"]["degraded"], true, "{nodes}");
    let (_, metrics) = a.http_get("/metrics");
    assert!(metrics.contains("skein_storage_degraded 1"), "{metrics}");
    let (_, events) = a.http_get("/v1/events");
    assert!(events.contains("storage_degraded"), "{events}");

    // While degraded, writes are refused before anything is proposed.
    let (code, body) = a.http_post("/v1/jobs", &job_body("while-degraded", 1024));
    assert_eq!(code, 503, "{body}");
    assert_eq!(body_json(&body)["outcome"], "not_applied", "{body}");

    // Space returns: the node recovers without a restart.
    std::fs::remove_file(&filler).unwrap();
    poll_until("storage healthy again", WAIT, || {
        (!storage_degraded(&a)).then_some(())
    });
    let (code, body) = a.http_post("/v1/jobs", &job_body("after", 1024));
    assert_eq!(code, 200, "{body}");
    let (_, events) = a.http_get("/v1/events");
    assert!(events.contains("storage_recovered"), "{events}");

    let check = |a: &Agent| {
        let names = job_names(a);
        let refused = written.refused.iter().map(String::as_str);
        for n in refused.chain(["while-degraded"]) {
            assert!(
                !names.iter().any(|m| m == n),
                "refused {n} applied: {names:?}"
            );
        }
        let acked = written.acknowledged.iter().map(String::as_str);
        for n in acked.chain(["before", "after"]) {
            assert!(
                names.iter().any(|m| m == n),
                "acknowledged {n} lost: {names:?}"
            );
        }
    };
    check(&a);
    a.restart();
    a.wait_for_leader(WAIT);
    check(&a);
}

/// Before: with its data dir deleted a node stayed a voter, writing to the
/// deleted redb file. Now it notices within seconds and exits non-zero.
#[test]
fn a_node_whose_data_dir_vanished_stops_with_an_error() {
    let mut a = Agent::start(AgentOpts::named("vanish"));
    a.wait_for_leader(WAIT);
    std::fs::remove_dir_all(a.data_dir()).unwrap();
    let status = a
        .wait_exit(WAIT)
        .unwrap_or_else(|| panic!("still running without its data dir\n{}", a.log_tail(30)));
    assert!(!status.success(), "{status:?}");
    let log = a.log_tail(40);
    assert!(log.contains("vanished"), "{log}");
    // The harness' drop must find the dir to clean up.
    std::fs::create_dir_all(a.data_dir()).unwrap();
}

/// Copies `from` into `to` (a data dir, flat plus `images/`), leaving out
/// the files named in `skip`.
fn copy_data_dir(from: &std::path::Path, to: &std::path::Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let name = e.file_name();
        if skip.iter().any(|s| name == *s) || !e.file_type().unwrap().is_file() {
            continue;
        }
        std::fs::copy(e.path(), to.join(&name)).unwrap();
    }
}

/// Before: a copy of a live node's data dir run beside it disrupted
/// leadership and nothing noticed. Now peers keep the original's record,
/// report the duplicate, refuse the newcomer's Raft RPCs (its peer id
/// differs) and the newcomer, seeing an older process with its id, exits.
/// Runs an agent on the copied data dir `dir`, joining `p`, until it exits
/// (bounded); whether it succeeded, and what it printed.
fn run_copy(p: &LoopbackPair, dir: &std::path::Path) -> (bool, String) {
    let mut copy = std::process::Command::new(skein_bin());
    copy.arg("agent")
        .arg("--data-dir")
        .arg(dir)
        .args(["--api", "127.0.0.1:0", "--mesh", "127.0.0.1:0"])
        .args(["--port-range", &reserve_port_range().arg()])
        .args([
            "--name",
            "copy",
            "--container-dns",
            "none",
            "--join",
            p.seed(),
        ])
        .arg("--cluster-key")
        .arg(p.cluster_key())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    die_with_parent(&mut copy);
    let child = copy.spawn().unwrap();
    let out = std::sync::Arc::new(std::sync::Mutex::new(None));
    let waiter = {
        let out = out.clone();
        std::thread::spawn(move || {
            *out.lock().unwrap() = Some(child.wait_with_output());
        })
    };
    let output = poll_until("the copy to exit", WAIT, || out.lock().unwrap().take());
    waiter.join().unwrap();
    let output = output.unwrap();
    let log = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), log)
}

#[test]
fn a_copied_data_dir_run_beside_its_original_is_refused() {
    let dns_off = |o: AgentOpts| o.arg("--container-dns").arg("none");
    let p = LoopbackPair::start(
        dns_off(AgentOpts::named("orig-a")),
        dns_off(AgentOpts::named("orig-b")),
    );
    p.wait_joined(WAIT);
    let (a, b) = (&p.a, &p.b);

    // Writes through a non-leader are forwarded, and bounded the same way.
    let (code, body) = b.http_post("/v1/jobs", &job_body("huge", 1_100_000));
    assert_eq!(code, 413, "{body}");
    let (code, body) = b.http_post("/v1/jobs", &job_body("big", 300 * 1024));
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("262144"), "{body}");

    // The copy: b's node id and raft state, but a fresh mesh key (a copy
    // that kept the key is refused the same way by gossip; see
    // docs/ARCHITECTURE.md for what it can still do).
    let scratch = tempfile::tempdir().unwrap();
    let copy_dir = scratch.path().join("data");
    copy_data_dir(b.data_dir(), &copy_dir, &["node.key", "api.addr"]);
    let (ok, log) = run_copy(&p, &copy_dir);
    assert!(!ok, "the copy exited 0:\n{log}");
    assert!(
        log.contains("another process gossips this node's id"),
        "{log}"
    );
    // A whole copy (mesh key and the API address it last had included) is
    // refused before it even joins: the original answers at that address.
    let whole = scratch.path().join("whole");
    copy_data_dir(b.data_dir(), &whole, &[]);
    let (ok, log) = run_copy(&p, &whole);
    assert!(!ok, "the whole copy exited 0:\n{log}");
    assert!(
        log.contains("another process runs this node's data dir"),
        "{log}"
    );

    // The original keeps its record on a, and the cluster its leader.
    let nodes = a.cli_json(&["node", "ls"]);
    let rec = nodes
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == b.node_id())
        .cloned()
        .unwrap();
    assert_eq!(rec["address"], b.api(), "{nodes}");
    assert!(a.wait_for_leader(WAIT)["leader_id"].is_string());
    let _ = std::fs::remove_dir_all(&copy_dir);
}

#[test]
fn two_nodes_with_one_name_are_reported_and_the_name_is_refused_as_ambiguous() {
    let twin = || AgentOpts::named("twin").arg("--container-dns").arg("none");
    let p = LoopbackPair::start(twin(), twin());
    let (a, b) = (&p.a, &p.b);
    let seen = poll_until("a duplicate_node event about the name", WAIT, || {
        let events = a.cli_json(&["events", "--kind", "duplicate_node"]);
        events
            .as_array()?
            .iter()
            .find(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("two nodes are named twin"))
            })
            .cloned()
    });
    assert!(
        seen["message"].as_str().unwrap().contains(b.node_id()),
        "{seen}"
    );
    let out = a.cli(&["node", "drain", "twin"]);
    out.assert_failure();
    assert!(
        out.stderr.contains("2 nodes are named \"twin\""),
        "{}",
        out.stderr
    );
    // By id it works.
    a.cli(&["node", "drain", b.node_id()]).assert_success();
}

/// A leader whose disk fills up hands leadership over: the other voters
/// elect one of themselves and take writes, and the degraded node comes
/// back when space returns.
#[test]
fn a_leader_with_a_full_disk_steps_down_and_the_cluster_keeps_writing() {
    let dns_off = |o: AgentOpts| o.arg("--container-dns").arg("none");
    let p = LoopbackPair::start(
        dns_off(AgentOpts::named("full-a")).data_tmpfs(4 * 1024 * 1024),
        dns_off(AgentOpts::named("full-b")),
    );
    let c = p.join(dns_off(AgentOpts::named("full-c")));
    let (a, b) = (&p.a, &p.b);
    poll_until("three voters", WAIT, || {
        let nodes = a.cli_json(&["node", "ls"]);
        let voters = nodes
            .as_array()?
            .iter()
            .filter(|n| n["role"] == "leader" || n["role"] == "voter")
            .count();
        (voters == 3).then_some(())
    });
    assert_eq!(a.status()["leader_id"], a.node_id(), "a leads");

    let filler = a.data_dir().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    let written = write_until_refused(a, "fill");
    assert!(storage_degraded(a), "{written:?}");

    // Another voter leads, and writes through b go on.
    let t0 = std::time::Instant::now();
    let leader = poll_until("a new leader among b and c", WAIT, || {
        let l = b.status()["leader_id"].as_str()?.to_string();
        (l == b.node_id() || l == c.node_id()).then_some(l)
    });
    eprintln!("degraded leader replaced after {:?}", t0.elapsed());
    let (code, body) = b.http_post("/v1/jobs", &job_body("after-handover", 1024));
    assert_eq!(code, 200, "{body}");
    assert!(job_names(b).iter().any(|n| n == "after-handover"));
    assert_ne!(leader, a.node_id());

    // Space returns: a recovers and catches up.
    std::fs::remove_file(&filler).unwrap();
    poll_until("a healthy again", WAIT, || {
        (!storage_degraded(a)).then_some(())
    });
    poll_until("a has the write made while it was degraded", WAIT, || {
        job_names(a)
            .iter()
            .any(|n| n == "after-handover")
            .then_some(())
    });
}
