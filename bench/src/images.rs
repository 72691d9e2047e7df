//! `cargo run -p skein-bench -- images [TRIALS]`: an image of about 50 MB
//! to 3 nodes that have separate Docker Engines, three ways, each from
//! "the image is only on its source" to "the image is loaded in all 3
//! engines":
//!
//! - registry pull: the image is pushed to a real registry on loopback (not
//!   timed), then a 3-replica job of it (`pull: if-not-present`, spread:
//!   one replica per node) is applied; also until the 3 replicas run;
//! - mesh copy: the image is loaded into node n0's engine (not timed), then
//!   `skein image push IMAGE --to n1 --to n2` on n0; also the on-demand
//!   variant: a 3-replica job of an image only n0 holds, and no registry;
//! - by hand, the floor: `docker save IMAGE | docker -H ENGINE load` from the
//!   source engine into each engine in turn (an operator's loop), the same 3
//!   at once, and the loop from n0's engine to the other 2 (like for like
//!   with `image push`).
//!
//! Every measure gets 3 fresh engines ([`Engine::start`]; the host's engine
//! is only the image source) and, for the Skein measures, 3 fresh agents on
//! loopback, so no measure finds anything left by another. Arrival is seen
//! by asking each engine's API (`GET /images/REF/json` on its socket) every
//! 50 ms. A fresh image per trial ([`unique_image`]). Writes the
//! `bench:images` section of docs/performance.md. With
//! `SKEIN_BENCH_VERBOSE=1`, the agents' log tails are printed after every
//! Skein measure, to see where the time went.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use skein_e2e::engine::Engine;
use skein_e2e::images::{unique_image, TestImage};
use skein_e2e::registry::Registry;
use skein_e2e::{
    http_get_url, require_demo_image, reserve_port_range, try_poll_until, unique_name, Agent,
    AgentOpts, PortRange,
};

/// Nodes (and engines) per measure.
const NODES: usize = 3;
/// MiB of random bytes in the image's own layer (the demo image adds ~2 MB).
const MEGABYTES: usize = 48;
/// How often arrival is checked.
const POLL: Duration = Duration::from_millis(50);
/// Limit for one measure.
const LIMIT: Duration = Duration::from_secs(300);
/// Limit for the set-up steps (cluster formed, inventory known).
const SETUP: Duration = Duration::from_secs(120);
/// Agent flags: as in the e2e image tests (several engines and agents
/// starting on a 2-core machine must not be declared dead).
const AGENT_ARGS: &[&str] = &[
    "--container-dns",
    "none",
    "--suspect-after",
    "5s",
    "--dead-after",
    "20s",
];

/// One line of the table.
struct Row {
    key: &'static str,
    how: &'static str,
    timed: &'static str,
}

/// The table's lines, in order. `hand` is the floor.
const ROWS: &[Row] = &[
    Row {
        key: "registry_image",
        how: "registry pull",
        timed: "`skein apply` of 3 replicas (`pull: if-not-present`) → image in all 3 engines",
    },
    Row {
        key: "registry_running",
        how: "registry pull",
        timed: "`skein apply` → 3 replicas running",
    },
    Row {
        key: "push_image",
        how: "mesh copy",
        timed: "`skein image push IMAGE --to n1 --to n2` on n0 → image in the other 2 engines",
    },
    Row {
        key: "push_cli",
        how: "mesh copy",
        timed: "`skein image push …` → the command returns",
    },
    Row {
        key: "peer_image",
        how: "mesh copy on demand",
        timed: "`skein apply` of 3 replicas of an image only n0 holds, no registry → image in all 3 engines",
    },
    Row {
        key: "peer_running",
        how: "mesh copy on demand",
        timed: "`skein apply` → 3 replicas running",
    },
    Row {
        key: "hand",
        how: "by hand (floor)",
        timed: "`docker save IMAGE \\| docker -H ENGINE load` into each of the 3 engines in turn",
    },
    Row {
        key: "hand_parallel",
        how: "by hand, parallel",
        timed: "the same 3 pipelines at once",
    },
    Row {
        key: "hand_from_n0",
        how: "by hand from n0",
        timed: "the loop from n0's engine into the other 2 (like for like with `image push`)",
    },
];

/// Times per row, and failed measures with what was seen.
#[derive(Default)]
struct Results {
    times: BTreeMap<&'static str, Vec<Duration>>,
    failures: Vec<(usize, &'static str, String)>,
    registry_push: Vec<Duration>,
    image_bytes: Vec<u64>,
}

impl Results {
    /// Runs one measure; a panic in it (a set-up step that timed out, a
    /// command that could not run) counts as its failure.
    fn record(
        &mut self,
        trial: usize,
        what: &'static str,
        measure: impl FnOnce() -> Result<Vec<(&'static str, Duration)>, String>,
    ) {
        let r = crate::control::caught(measure);
        match r {
            Ok(v) => {
                let shown: Vec<String> = v
                    .iter()
                    .map(|(k, d)| format!("{k} {:.2}s", d.as_secs_f64()))
                    .collect();
                eprintln!("trial {trial}: {what}: {}", shown.join(", "));
                for (k, d) in v {
                    self.times.entry(k).or_default().push(d);
                }
            }
            Err(e) => {
                eprintln!("trial {trial}: {what} FAILED:\n{e}");
                self.failures.push((trial, what, e));
            }
        }
    }
}

/// Runs the benchmark and writes its section of docs/performance.md.
pub fn run(trials: usize) {
    require_demo_image();
    // Fail now rather than after the first measures.
    let (bin, profile) = crate::agent_build();
    eprintln!("images: {trials} trial(s), agents run {}", bin.display());
    let mut res = Results::default();
    for t in 1..=trials {
        let img = unique_image("bench", MEGABYTES);
        let bytes =
            skein_e2e::docker(&["image", "inspect", "--format", "{{.Size}}", &img.reference]);
        res.image_bytes.push(bytes.parse().unwrap_or(0));
        eprintln!("trial {t}: image {} ({bytes} bytes)", img.reference);

        res.record(t, "by hand, in turn", || hand(&img, Hand::Loop));
        res.record(t, "by hand, parallel", || hand(&img, Hand::Parallel));
        res.record(t, "by hand from n0", || hand(&img, Hand::FromN0));

        let registry = Registry::start();
        let started = Instant::now();
        let reference = registry.push(
            &img.reference,
            &format!("skein-bench/{}:v1", unique_name("img")),
        );
        res.registry_push.push(started.elapsed());
        res.record(t, "registry pull", || registry_pull(&reference));
        drop(registry);

        res.record(t, "mesh copy (image push)", || mesh_push(&img));
        res.record(t, "mesh copy on demand (apply)", || mesh_apply(&img));
    }
    let text = report(trials, &mut res, profile);
    crate::doc::write_section("images", &text);
    print!("{text}");
}

// ---------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------

/// 3 engines and, for the Skein measures, 3 agents n0..n2 on them.
struct Nodes {
    // Dropped first: agents remove their containers while the engines run.
    agents: Vec<Agent>,
    _mesh: Option<PortRange>,
    engines: Vec<Engine>,
}

impl Nodes {
    fn engines() -> Nodes {
        Nodes {
            agents: Vec::new(),
            _mesh: None,
            engines: (0..NODES).map(|_| Engine::start()).collect(),
        }
    }

    /// Engines, `preload` copied into n0's (not timed), then the agents: n0
    /// bootstraps, the others join it; returns once all 3 are ready and,
    /// with `preload`, once n0 lists it among its images.
    fn cluster(preload: Option<&TestImage>) -> Nodes {
        let mut n = Nodes::engines();
        if let Some(img) = preload {
            n.engines[0].load_from_host(&img.reference);
        }
        let mesh = reserve_port_range();
        let seed = format!("127.0.0.1:{}", mesh.first);
        let opts = |i: usize| {
            let name = format!("n{i}");
            let mut o = AgentOpts::named(&name)
                .label("node", &name)
                .docker_host(&n.engines[i].host());
            for a in AGENT_ARGS {
                o = o.arg(a);
            }
            o
        };
        let n0 = Agent::start(opts(0).arg("--mesh").arg(&seed));
        n0.wait_for_leader(SETUP);
        let key = n0.data_dir().join("cluster.key");
        let key = key.to_string_lossy().into_owned();
        let mut agents = vec![n0];
        for i in 1..NODES {
            agents.push(Agent::start(
                opts(i)
                    .arg("--join")
                    .arg(&seed)
                    .arg("--cluster-key")
                    .arg(&key),
            ));
        }
        n.agents = agents;
        n._mesh = Some(mesh);
        let ready = try_poll_until(SETUP, || {
            let o = n.agents[0].cli(&["-o", "json", "node", "ls"]);
            let v: Value = serde_json::from_str(&o.stdout).ok()?;
            let ready = v
                .as_array()?
                .iter()
                .filter(|x| x["health"] == "ready")
                .count();
            (ready == NODES).then_some(())
        });
        assert!(
            ready.is_some(),
            "3 nodes not ready after {SETUP:?}\n{}",
            n.logs()
        );
        if let Some(img) = preload {
            let known = try_poll_until(SETUP, || {
                let (code, body) =
                    http_get_url(&format!("http://{}/v1/images", n.agents[0].api())).ok()?;
                let v: Value = serde_json::from_str(&body).ok()?;
                let on_n0 = v.as_array()?.iter().any(|i| {
                    i["id"] == img.id.as_str()
                        && i["nodes"]
                            .as_array()
                            .is_some_and(|ns| ns.iter().any(|x| x == "n0"))
                });
                (code == 200 && on_n0).then_some(())
            });
            assert!(
                known.is_some(),
                "n0 does not list {} in /v1/images after {SETUP:?}\n{}",
                img.reference,
                n.logs()
            );
        }
        n
    }

    /// The tail of every agent's log.
    fn logs(&self) -> String {
        let mut s = String::new();
        for (i, a) in self.agents.iter().enumerate() {
            let _ = writeln!(
                s,
                "--- n{i} ({}) agent log, last 40 lines ---\n{}",
                a.node_id(),
                a.log_tail(40)
            );
        }
        s
    }

    /// Allocations of `job` as n0 serves them.
    fn allocs(&self, job: &str) -> Vec<Value> {
        let url = format!("http://{}/v1/allocs?job={job}", self.agents[0].api());
        match http_get_url(&url) {
            Ok((200, body)) => serde_json::from_str::<Value>(&body)
                .ok()
                .and_then(|v| v.as_array().cloned())
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// Whether the engine at `host` (`unix://PATH`) has image `reference`:
/// `GET /images/REF/json` on its socket answers 200. What
/// [`Engine::has_image`] asks, without starting a `docker` process, so
/// that 3 engines can be asked every 50 ms.
fn engine_has(host: &str, reference: &str) -> bool {
    let path = host.strip_prefix("unix://").unwrap_or(host);
    let Ok(mut s) = UnixStream::connect(path) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET /images/{reference}/json HTTP/1.0\r\nHost: docker\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    // "HTTP/1.x 200 …"
    let mut head = Vec::with_capacity(16);
    let mut buf = [0u8; 16];
    while head.len() < 12 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    &head[9..12] == b"200"
}

/// A CLI command started in the background, its output going to a file.
struct Background {
    child: Child,
    out: std::path::PathBuf,
    command: String,
}

impl Background {
    fn start(agent: &Agent, args: &[&str]) -> Background {
        let out = agent
            .scratch_dir()
            .join(format!("{}.out", unique_name("cli")));
        let f = File::create(&out).expect("create the command's output file");
        let f2 = f.try_clone().expect("dup the output file");
        let child = agent
            .cli_command(args)
            .stdin(Stdio::null())
            .stdout(f)
            .stderr(f2)
            .spawn()
            .expect("start the skein CLI");
        Background {
            child,
            out,
            command: format!("skein {}", args.join(" ")),
        }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// When each awaited thing happened, counted from `t0`.
#[derive(Default)]
struct Seen {
    images: Vec<Option<Duration>>,
    running: Option<Duration>,
    cli: Option<Duration>,
}

/// Follows a CLI command started at `t0` until the image `reference` is in
/// the engines `targets`, `job` (if any) runs 3 replicas on 3 nodes and the
/// command has returned successfully; `Err` with what was seen otherwise.
fn follow(
    nodes: &Nodes,
    mut cmd: Background,
    t0: Instant,
    reference: &str,
    targets: &[usize],
    job: Option<&str>,
) -> Result<Seen, String> {
    let mut seen = Seen {
        images: vec![None; targets.len()],
        ..Seen::default()
    };
    let fail = |why: String, seen: &Seen, cmd: &Background, allocs: &[Value]| {
        let mut s = format!("{why}\n");
        for (i, (&e, t)) in targets.iter().zip(&seen.images).enumerate() {
            let _ = writeln!(
                s,
                "  target {i}: engine of n{e}: image {}",
                t.map_or("absent".into(), |d| format!(
                    "after {:.2}s",
                    d.as_secs_f64()
                ))
            );
        }
        if job.is_some() {
            let _ = writeln!(s, "  allocs: {}", Value::Array(allocs.to_vec()));
        }
        let _ = writeln!(
            s,
            "--- `{}` output ---\n{}",
            cmd.command,
            cmd.output().trim_end()
        );
        s.push_str(&nodes.logs());
        s
    };
    let mut allocs = Vec::new();
    loop {
        let now = t0.elapsed();
        for (slot, &e) in seen.images.iter_mut().zip(targets) {
            if slot.is_none() && engine_has(&nodes.engines[e].host(), reference) {
                *slot = Some(now);
            }
        }
        if let Some(job) = job.filter(|_| seen.running.is_none()) {
            allocs = nodes.allocs(job);
            let mut on: Vec<&str> = allocs
                .iter()
                .filter_map(|a| a["node_name"].as_str())
                .collect();
            on.sort_unstable();
            on.dedup();
            if allocs.len() == NODES && on.len() < NODES {
                return Err(fail(
                    format!("the {NODES} replicas are not one per node: {on:?}"),
                    &seen,
                    &cmd,
                    &allocs,
                ));
            }
            let running = allocs
                .iter()
                .filter(|a| a["status"]["state"] == "running")
                .count();
            if running == NODES {
                seen.running = Some(now);
            }
        }
        if seen.cli.is_none() {
            match cmd.child.try_wait() {
                Ok(Some(status)) if status.success() => seen.cli = Some(now),
                Ok(Some(status)) => {
                    return Err(fail(
                        format!("`{}` failed ({status})", cmd.command),
                        &seen,
                        &cmd,
                        &allocs,
                    ));
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(fail(
                        format!("waiting for `{}`: {e}", cmd.command),
                        &seen,
                        &cmd,
                        &allocs,
                    ))
                }
            }
        }
        let done = seen.images.iter().all(Option::is_some)
            && (job.is_none() || seen.running.is_some())
            && seen.cli.is_some();
        if done {
            if std::env::var_os("SKEIN_BENCH_VERBOSE").is_some_and(|v| v == "1") {
                eprintln!(
                    "--- `{}` output ---\n{}",
                    cmd.command,
                    cmd.output().trim_end()
                );
                eprintln!("{}", nodes.logs());
            }
            return Ok(seen);
        }
        if now > LIMIT {
            return Err(fail(
                format!("not done after {LIMIT:?}"),
                &seen,
                &cmd,
                &allocs,
            ));
        }
        std::thread::sleep(POLL);
    }
}

fn latest(v: &[Option<Duration>]) -> Duration {
    v.iter().flatten().max().copied().unwrap_or_default()
}

/// The image's id in engine `e` must be `want` (a copy is the same image).
fn check_id(nodes: &Nodes, e: usize, reference: &str, want: &str) -> Result<(), String> {
    match nodes.engines[e].image_id(reference) {
        Some(id) if id == want => Ok(()),
        other => Err(format!(
            "engine of n{e} holds {reference} as {other:?}, not {want}"
        )),
    }
}

// ---------------------------------------------------------------------------
// Measures
// ---------------------------------------------------------------------------

fn manifest(agent: &Agent, job: &str, image: &str) -> String {
    let path = agent.write_manifest(
        &format!("{job}.yaml"),
        &format!("name: {job}\nreplicas: {NODES}\nimage: {image}\npull: if-not-present\n"),
    );
    path.to_string_lossy().into_owned()
}

fn registry_pull(reference: &str) -> Result<Vec<(&'static str, Duration)>, String> {
    let nodes = Nodes::cluster(None);
    let job = unique_name("pull");
    let file = manifest(&nodes.agents[0], &job, reference);
    let t0 = Instant::now();
    let cmd = Background::start(
        &nodes.agents[0],
        &["apply", "-f", &file, "--timeout", "600"],
    );
    let seen = follow(&nodes, cmd, t0, reference, &[0, 1, 2], Some(&job))?;
    Ok(vec![
        ("registry_image", latest(&seen.images)),
        ("registry_running", seen.running.unwrap_or_default()),
    ])
}

fn mesh_push(img: &TestImage) -> Result<Vec<(&'static str, Duration)>, String> {
    let nodes = Nodes::cluster(Some(img));
    let t0 = Instant::now();
    let cmd = Background::start(
        &nodes.agents[0],
        &[
            "image",
            "push",
            &img.reference,
            "--to",
            "n1",
            "--to",
            "n2",
            "--timeout",
            "600",
        ],
    );
    let seen = follow(&nodes, cmd, t0, &img.reference, &[1, 2], None)?;
    for e in 1..NODES {
        check_id(&nodes, e, &img.reference, &img.id)?;
    }
    Ok(vec![
        ("push_image", latest(&seen.images)),
        ("push_cli", seen.cli.unwrap_or_default()),
    ])
}

fn mesh_apply(img: &TestImage) -> Result<Vec<(&'static str, Duration)>, String> {
    let nodes = Nodes::cluster(Some(img));
    let job = unique_name("copy");
    let file = manifest(&nodes.agents[0], &job, &img.reference);
    let t0 = Instant::now();
    let cmd = Background::start(
        &nodes.agents[0],
        &["apply", "-f", &file, "--timeout", "600"],
    );
    let seen = follow(&nodes, cmd, t0, &img.reference, &[0, 1, 2], Some(&job))?;
    for e in 1..NODES {
        check_id(&nodes, e, &img.reference, &img.id)?;
    }
    Ok(vec![
        ("peer_image", latest(&seen.images)),
        ("peer_running", seen.running.unwrap_or_default()),
    ])
}

#[derive(Clone, Copy)]
enum Hand {
    /// From the host's engine into the 3 engines, one after the other.
    Loop,
    /// The same 3 pipelines at once.
    Parallel,
    /// From n0's engine into the other 2, one after the other.
    FromN0,
}

/// `sh -c 'docker [-H SRC] save IMAGE | docker -H DST load'`.
fn pipeline(src: Option<&str>, dst: &str, image: &str) -> Command {
    let src = src.map(|h| format!(" -H {h}")).unwrap_or_default();
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg(format!("docker{src} save {image} | docker -H {dst} load"))
        .env_remove("DOCKER_CONTEXT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn hand(img: &TestImage, how: Hand) -> Result<Vec<(&'static str, Duration)>, String> {
    let nodes = Nodes::engines();
    let (src, targets, key): (Option<String>, &[usize], _) = match how {
        Hand::Loop => (None, &[0, 1, 2], "hand"),
        Hand::Parallel => (None, &[0, 1, 2], "hand_parallel"),
        Hand::FromN0 => {
            nodes.engines[0].load_from_host(&img.reference);
            (Some(nodes.engines[0].host()), &[1, 2], "hand_from_n0")
        }
    };
    let cmd = |e: usize| pipeline(src.as_deref(), &nodes.engines[e].host(), &img.reference);
    let check = |out: std::process::Output, e: usize| -> Result<(), String> {
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "the pipeline into n{e}'s engine failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    };
    let t0 = Instant::now();
    match how {
        Hand::Parallel => {
            let children: Vec<(usize, Child)> = targets
                .iter()
                .map(|&e| (e, cmd(e).spawn().expect("start sh")))
                .collect();
            for (e, c) in children {
                check(c.wait_with_output().map_err(|e| e.to_string())?, e)?;
            }
        }
        Hand::Loop | Hand::FromN0 => {
            for &e in targets {
                check(cmd(e).output().map_err(|e| e.to_string())?, e)?;
            }
        }
    }
    let took = t0.elapsed();
    for &e in targets {
        check_id(&nodes, e, &img.reference, &img.id)?;
    }
    Ok(vec![(key, took)])
}

// ---------------------------------------------------------------------------
// Report
// ---------------------------------------------------------------------------

fn median(v: &[Duration]) -> Option<Duration> {
    let mut v = v.to_vec();
    v.sort();
    v.get(v.len() / 2).copied()
}

fn report(trials: usize, res: &mut Results, profile: &str) -> String {
    let floor = res.times.get("hand").and_then(|v| median(v));
    let ratio = |key: &str, base: Option<Duration>| -> String {
        match (res.times.get(key).and_then(|v| median(v)), base) {
            (Some(m), Some(b)) if !b.is_zero() => {
                format!("{:.2}", m.as_secs_f64() / b.as_secs_f64())
            }
            _ => "-".into(),
        }
    };
    let bytes = res.image_bytes.iter().max().copied().unwrap_or(0);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## An image to 3 nodes: registry pull, mesh copy, by hand\n"
    );
    let _ =
        writeln!(
        s,
        "Written by `{}cargo run -p skein-bench -- images {trials}` (bench/src/images.rs), all \
         figures from that one run on one 2-core machine: 3 nodes, each a `skein agent` \
         ({profile} build; `--suspect-after 5s --dead-after 20s`) on loopback with its own \
         Docker Engine (a second dockerd, `vfs` storage), all started afresh for every \
         measure; the host's engine is only where the image comes from. The image is made \
         fresh each trial: the demo image plus a layer of {MEGABYTES} MiB of random bytes, \
         {bytes} bytes as `docker image inspect` reports ({:.1} MB). Each measure runs from \
         \"the image is only on its source\" (the registry, the host's engine, or n0's \
         engine) until it is loaded in every engine that lacked it, seen by asking each \
         engine every 50 ms. {trials} {}; times in seconds; × floor is the median over \
         the median of the by-hand loop into the 3 engines.\n",
        if profile == "release" { "SKEIN_BIN=target/release/skein " } else { "" },
        bytes as f64 / 1e6,
        if trials == 1 { "trial" } else { "trials" },
    );
    let _ = writeln!(
        s,
        "| measure | from → until | min | median | max | × floor |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for r in ROWS {
        let mut v = res.times.get(r.key).cloned().unwrap_or_default();
        let n = v.len();
        let stats = crate::stats(&mut v);
        let failed = if n < trials {
            format!(" ({} of {trials} trials failed)", trials - n)
        } else {
            String::new()
        };
        let _ = writeln!(
            s,
            "| {} | {}{failed} | {stats} | {} |",
            r.how,
            r.timed,
            ratio(r.key, floor)
        );
    }
    let like = res.times.get("hand_from_n0").and_then(|v| median(v));
    let _ = writeln!(
        s,
        "\nLike for like, `skein image push` to the other 2 engines takes {}× the by-hand loop \
         from n0's engine into the same 2 (the command returns after {}×: it polls every \
         500 ms). Not in the table: the registry needs the image first; `docker push` of it \
         to the registry on loopback took {} s (median).",
        ratio("push_image", like),
        ratio("push_cli", like),
        median(&res.registry_push).map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64())),
    );
    if !res.failures.is_empty() {
        let _ = writeln!(s, "\nFailed measures (details in the run's stderr):\n");
        for (t, what, e) in &res.failures {
            let first = e.lines().next().unwrap_or_default();
            let _ = writeln!(s, "- trial {t}, {what}: {first}");
        }
    }
    s
}
