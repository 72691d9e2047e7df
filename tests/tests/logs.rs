//! Logs across hosts: `skein logs -f` on one node shows what a container
//! on another node writes, relayed over the mesh.

use std::time::Duration;

use skein_e2e::*;

const STEADY: &[&str] = &["--suspect-after", "5s", "--dead-after", "20s"];
const WAIT: Duration = Duration::from_secs(60);

#[test]
fn logs_follow_from_node_a_shows_lines_written_on_node_b() {
    require_demo_image();
    let opts = ClusterOpts::default().args(STEADY).zones(&["a", "b", "c"]);
    let c = Cluster::start(3, opts);
    c.wait_for_nodes(3, WAIT);
    let leader = c.wait_for_leader(WAIT);
    let job = unique_name("ticker");
    let file = c.node(leader).write_manifest(
        "ticker.yaml",
        &format!(
            "name: {job}\nimage: skein-demo/web:latest\nconstraints: {{zone: b}}\n\
             command: [/bin/sh, -c, 'i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done']\n"
        ),
    );
    c.node(leader)
        .cli_timeout(WAIT, &["apply", "-f", file.to_str().unwrap()])
        .assert_success();
    let alloc = c.allocs(0, &job).unwrap()[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        c.allocs(0, &job).unwrap()[0]["node_id"].as_str(),
        Some(c.node(1).node_id()),
        "the ticker runs on node1"
    );

    // Not following: the lines so far, fetched from node1 through node0.
    let out = poll_until("some ticks logged", WAIT, || {
        let o = c.node(0).cli(&["logs", &alloc, "--tail", "5"]);
        (o.success() && o.stdout.contains("tick-")).then_some(o)
    });
    assert!(out.stdout.lines().count() <= 5, "{}", out.stdout);

    // Following, through node2 (neither the owner nor necessarily the leader).
    let follower = c.node(2).cli_stream(&["logs", "-f", &alloc, "--tail", "1"]);
    let mut seen: Vec<u64> = Vec::new();
    let deadline = std::time::Instant::now() + WAIT;
    while seen.len() < 10 {
        let line = follower
            .next_line(deadline)
            .unwrap_or_else(|| panic!("only {} lines followed: {seen:?}", seen.len()));
        if let Some(n) = line
            .strip_prefix("tick-")
            .and_then(|n| n.trim().parse().ok())
        {
            seen.push(n);
        }
    }
    assert!(
        seen.windows(2).all(|w| w[1] > w[0]),
        "lines arrive in order, without repeats: {seen:?}"
    );

    // Job form: every replica's lines, prefixed with its allocation.
    let o = c.node(0).cli(&["logs", &job, "--tail", "2"]);
    o.assert_success();
    assert!(
        o.stdout.contains(&format!("[{alloc}] tick-")),
        "{}",
        o.stdout
    );
}
