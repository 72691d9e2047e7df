//! Failover under writes: one 3-node cluster in network namespaces
//! (default flags, as the `failover` mode), a writer thread applying
//! distinct jobs of 0 replicas through the 3 nodes in turn (at most
//! [`WRITER_RATE`] a second) and recording each acknowledged one. Then,
//! KILLS times, once the writer has had another second's worth
//! acknowledged: SIGKILL the leader, time until a write through a
//! survivor (a fresh job, `POST /v1/jobs` again until it is answered 200)
//! is committed; restart the killed node and wait until it has caught up
//! before the next kill. At the end every acknowledged job must be in
//! the cluster's state (`GET /v1/jobs` through the leader): the ones
//! missing are acknowledged writes lost.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use skein_e2e::{http_get_url, http_post_url, try_poll_until, unique_name, Cluster};

use super::{failures, percentile, spread};

/// The writer's pace: writes a second at most.
const WRITER_RATE: u32 = 20;
/// Limit for one failover (a kill until the write is committed).
const LIMIT: Duration = Duration::from_secs(60);
/// Limit for the restarted node to catch up.
const SETUP: Duration = Duration::from_secs(120);

/// The body of one job of 0 replicas named `name`.
fn job(name: &str) -> Vec<u8> {
    serde_json::json!({"jobs": [{
        "name": name,
        "replicas": 0,
        "image": skein_e2e::DEMO_IMAGE,
        "pull": "never",
    }]})
    .to_string()
    .into_bytes()
}

/// Applies `name` through `api`: `Ok` when it was acknowledged (200),
/// else what came back.
fn write(api: &str, name: &str) -> Result<(), String> {
    match http_post_url(&format!("http://{api}/v1/jobs"), &job(name)) {
        Ok((200, _)) => Ok(()),
        Ok((code, body)) => Err(format!(
            "{code}: {}",
            body.chars().take(200).collect::<String>()
        )),
        Err(e) => Err(e),
    }
}

/// What the run saw.
#[derive(Default)]
struct Outcome {
    /// Seconds from each kill to the committed write.
    times: Vec<f64>,
    acked: usize,
    /// Writes the writer thread tried.
    attempts: u64,
    lost: Vec<String>,
    failed: Vec<(String, String)>,
}

/// Runs `kills` leader failovers and returns the document's part.
pub fn run(kills: usize, _profile: &str) -> String {
    let mut out = Outcome::default();
    let r = super::attempt("failover", || measure(kills, &mut out));
    if let Err(e) = r {
        out.failed.push(("the run".into(), e));
    }
    report(kills, &out)
}

fn measure(kills: usize, out: &mut Outcome) -> Result<(), String> {
    let (mut c, _) = crate::cluster();
    let apis: Vec<String> = (0..3).map(|i| c.node(i).api().to_string()).collect();
    let prefix = unique_name("fo");
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acked, stop, apis, prefix) =
            (acked.clone(), stop.clone(), apis.clone(), prefix.clone());
        std::thread::spawn(move || {
            let pace = Duration::from_secs(1) / WRITER_RATE;
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let started = Instant::now();
                seq += 1;
                let name = format!("{prefix}-w{seq}");
                match write(&apis[seq as usize % apis.len()], &name) {
                    Ok(()) => acked.lock().unwrap_or_else(|p| p.into_inner()).push(name),
                    Err(e) if seq < 20 || seq.is_multiple_of(100) => {
                        eprintln!("failover: writer: {name}: {e}")
                    }
                    Err(_) => {}
                }
                // Pacing, not synchronisation.
                std::thread::sleep(pace.saturating_sub(started.elapsed()));
            }
            seq
        })
    };
    let result = kill_loop(&mut c, kills, &prefix, &acked, out);
    stop.store(true, Ordering::Relaxed);
    let attempts = writer.join().unwrap_or(0);
    result?;
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    out.acked = acked.len();
    out.attempts = attempts;
    let leader = c.wait_for_leader(SETUP);
    let held = jobs(c.node(leader).api())?;
    out.lost = acked.into_iter().filter(|j| !held.contains(j)).collect();
    eprintln!(
        "failover: {} acknowledged writes, {} lost",
        out.acked,
        out.lost.len()
    );
    Ok(())
}

fn kill_loop(
    c: &mut Cluster,
    kills: usize,
    prefix: &str,
    acked: &Mutex<Vec<String>>,
    out: &mut Outcome,
) -> Result<(), String> {
    for k in 1..=kills {
        let leader = c.wait_for_leader(SETUP);
        // Writes are being acknowledged when the leader dies.
        let before = acked.lock().unwrap_or_else(|p| p.into_inner()).len();
        try_poll_until(SETUP, || {
            let now = acked.lock().unwrap_or_else(|p| p.into_inner()).len();
            (now >= before + WRITER_RATE as usize).then_some(())
        })
        .ok_or_else(|| format!("the writer got no write acknowledged in {SETUP:?}"))?;
        // The two survivors take turns.
        let via = (leader + 1 + k % 2) % 3;
        let api = c.node(via).api().to_string();
        c.kill(leader);
        let t0 = Instant::now();
        let mut n = 0;
        let done = try_poll_until(LIMIT, || {
            n += 1;
            let name = format!("{prefix}-k{k}-{n}");
            write(&api, &name).ok().map(|()| {
                acked.lock().unwrap_or_else(|p| p.into_inner()).push(name);
                t0.elapsed()
            })
        });
        let Some(took) = done else {
            out.failed.push((
                format!("kill {k}"),
                format!("no write through node{via} committed {LIMIT:?} after the kill"),
            ));
            c.restart(leader);
            continue;
        };
        eprintln!(
            "failover kill {k}: node{leader} killed, write through node{via} committed after {:.3}s",
            took.as_secs_f64()
        );
        out.times.push(took.as_secs_f64());
        c.restart(leader);
        caught_up(c, leader)?;
    }
    Ok(())
}

/// Waits until node `i` follows the current leader and has applied what
/// the leader had applied when this began.
fn caught_up(c: &Cluster, i: usize) -> Result<(), String> {
    let leader = c.wait_for_leader(SETUP);
    let target = c.status(leader)?["last_applied"].as_u64().unwrap_or(0);
    let leader_id = c.node(leader).node_id().to_string();
    try_poll_until(SETUP, || {
        let s = c.status(i).ok()?;
        (s["leader_id"] == leader_id.as_str() && s["last_applied"].as_u64()? >= target)
            .then_some(())
    })
    .ok_or_else(|| format!("node{i} did not catch up with the leader after {SETUP:?}"))
}

/// The names of the jobs the node at `api` serves.
fn jobs(api: &str) -> Result<BTreeSet<String>, String> {
    let (code, body) = http_get_url(&format!("http://{api}/v1/jobs"))?;
    if code != 200 {
        return Err(format!("GET /v1/jobs answered {code}: {body}"));
    }
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("/v1/jobs: {e}"))?;
    Ok(v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|j| j["spec"]["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default())
}

fn report(kills: usize, out: &Outcome) -> String {
    let ms =
        |p: f64| percentile(&out.times, p).map_or("-".into(), |x| format!("{:.0}", x * 1000.0));
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### Failover under writes: leader killed → write committed\n"
    );
    let _ = writeln!(
        s,
        "One 3-node cluster in network namespaces (default flags: `--suspect-after 1500ms \
         --dead-after 3s`). A writer applies distinct jobs of 0 replicas through the 3 nodes \
         in turn (at most {WRITER_RATE}/s) and records every acknowledged one. {kills} times: \
         once the writer has had another {WRITER_RATE} writes acknowledged, SIGKILL the leader, then apply a fresh job through a survivor (the two take turns) \
         again until it is answered 200; the time is from the kill to that answer. The killed \
         node is restarted and caught up before the next kill. At the end every acknowledged \
         job is looked up in the state the leader serves.\n"
    );
    let _ = writeln!(s, "| measure | goal | result |");
    let _ = writeln!(s, "|---|---|---|");
    let _ = writeln!(
        s,
        "| leader killed → write through a survivor committed, p50 | ≤ 500 ms | {} ms |",
        ms(50.0)
    );
    let _ = writeln!(
        s,
        "| the same, p99 (nearest rank; of 10 kills, the slowest) | ≤ 1000 ms | {} ms |",
        ms(99.0)
    );
    let _ = writeln!(
        s,
        "| min, median, max over {} kills (s) | - | {} |",
        out.times.len(),
        spread(&out.times, 3).replace(" | ", ", ")
    );
    let _ = writeln!(
        s,
        "| acknowledged writes lost | 0 | {} of {} acknowledged ({} tried by the writer, plus \
         the timed ones) |",
        out.lost.len(),
        out.acked,
        out.attempts
    );
    if !out.lost.is_empty() {
        let shown: Vec<&str> = out.lost.iter().take(10).map(String::as_str).collect();
        let _ = writeln!(s, "\nLost: {}", shown.join(", "));
    }
    s.push_str(&failures(&out.failed));
    s
}
