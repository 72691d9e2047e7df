//! `cargo run --release -p skein-bench -- control [deploy|writes|failover]
//! [TRIALS]`: Skein's control plane side by side with its peers, every peer
//! measured in the same run on the same machine, figures given as ratios:
//!
//! - [`deploy`]: replicas from submit to running — Skein vs `docker run -d`
//!   (the engine's floor) vs Docker Swarm; 50 on one node, 200 on 3;
//! - [`writes`]: job writes/s with `wrk` (16 connections), one node and 3
//!   voters (through the leader and a follower), empty and with many jobs
//!   held — vs etcd's v3 HTTP gateway with the same script;
//! - [`failover`]: the leader SIGKILLed, time until a write through a
//!   survivor is committed (p50, p99 over many kills) and acknowledged
//!   writes lost.
//!
//! Each measure rewrites its own part of the `bench:control` section of
//! docs/performance.md (between `<!-- bench:control-MEASURE -->` markers),
//! keeping the others. Everything a measure makes (agents, containers
//! labelled `skein.*`, the swarm, etcd processes, namespaces) is removed by
//! guards, also when it fails. Needs root, Docker, the demo image, `wrk`
//! and `etcd` (Debian: `apt-get install wrk etcd-server`).

mod deploy;
mod failover;
mod peers;
mod writes;

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The measures, in the order of the document.
const MEASURES: &[&str] = &["deploy", "writes", "failover"];

/// How often "is it there yet" is asked while a measure is timed.
pub(crate) const POLL: Duration = Duration::from_millis(100);

/// Runs `which` (all measures when `None`) with `trials` each (the
/// measure's default when `None`) and writes their parts of the document.
pub fn run(which: Option<&str>, trials: Option<usize>) {
    skein_e2e::require_demo_image();
    let (bin, profile) = crate::agent_build();
    eprintln!("control: agents run {} ({profile})", bin.display());
    let measures: Vec<&str> = match which {
        Some(m) => vec![m],
        None => MEASURES.to_vec(),
    };
    for m in measures {
        let (text, trials) = match m {
            "deploy" => {
                let t = trials.unwrap_or(3);
                (deploy::run(t, profile), t)
            }
            "writes" => {
                let t = trials.unwrap_or(3);
                (writes::run(t, profile), t)
            }
            "failover" => {
                let t = trials.unwrap_or(10);
                (failover::run(t, profile), t)
            }
            other => crate::usage(other),
        };
        let text = format!(
            "{}\n\nWritten by `{}cargo run --release -p skein-bench -- control {m} {trials}` \
             (bench/src/control/{m}.rs).\n",
            text.trim_end(),
            if profile == "release" {
                "SKEIN_BIN=target/release/skein "
            } else {
                ""
            }
        );
        print!("{text}");
        write_part(m, &text);
    }
}

/// Replaces measure `m`'s part of the `control` section, keeping the others.
fn write_part(m: &str, text: &str) {
    let old = crate::doc::section("control").unwrap_or_default();
    let mut body = String::from(HEADING);
    body.push_str("\n\n");
    body.push_str(INTRO);
    for &name in MEASURES {
        let key = format!("control-{name}");
        let part = if name == m {
            text.trim().to_string()
        } else {
            crate::doc::extract(&old, &key).unwrap_or_else(|| {
                format!("Not measured yet: `cargo run --release -p skein-bench -- control {name}`.")
            })
        };
        let _ = write!(
            body,
            "\n\n<!-- bench:{key} -->\n{part}\n<!-- /bench:{key} -->"
        );
    }
    crate::doc::write_section("control", &body);
}

const HEADING: &str = "## Control plane side by side with its peers";

const INTRO: &str = "Each peer is measured in the same run on the same 2-core machine \
(shared, so absolute figures are noisy; the ratios are what to compare). \
Goals from the issue: deploy ≤ 1.1× the engine's floor and ≤ 0.7× Docker \
Swarm; writes ≥ 1.0× etcd, and with 100,000 entries within 20% of empty; \
leader failover p50 ≤ 500 ms, p99 ≤ 1 s, no acknowledged write lost.";

// ---------------------------------------------------------------------------
// The host's engine, asked directly
// ---------------------------------------------------------------------------

/// The host engine's socket (`DOCKER_HOST=unix://…`, else the default).
fn engine_socket() -> String {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if h.starts_with("unix://") => h["unix://".len()..].to_string(),
        _ => "/var/run/docker.sock".into(),
    }
}

/// `GET path` on the engine's API: the body of a 200 answer.
fn engine_get(path: &str) -> Result<String, String> {
    let sock = engine_socket();
    let mut s = UnixStream::connect(&sock).map_err(|e| format!("connect {sock}: {e}"))?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(10)));
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes())
        .map_err(|e| format!("GET {path}: {e}"))?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)
        .map_err(|e| format!("GET {path}: {e}"))?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path}: no HTTP answer: {text}"))?;
    if head.get(9..12) != Some("200") {
        return Err(format!("GET {path}: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_string())
}

/// `%XX` for every byte but unreserved ones (RFC 3986).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// How many running containers of the host's engine carry `label`
/// (`key=value`): one `GET /containers/json`, no `docker` process, so it
/// can be asked every [`POLL`] while the engine is busy.
pub(crate) fn running_with_label(label: &str) -> Result<usize, String> {
    let filters = serde_json::json!({ "label": [label] }).to_string();
    let body = engine_get(&format!(
        "/containers/json?filters={}",
        percent_encode(&filters)
    ))?;
    let v: Value =
        serde_json::from_str(&body).map_err(|e| format!("/containers/json: not JSON ({e})"))?;
    Ok(v.as_array().map_or(0, Vec::len))
}

/// Polls until `want` containers labelled `label` run: the time since
/// `t0` when it was seen, or `Err` after `limit` with the last count.
pub(crate) fn wait_running(
    label: &str,
    want: usize,
    t0: Instant,
    limit: Duration,
) -> Result<Duration, String> {
    let mut last = Err("not asked".to_string());
    while t0.elapsed() < limit {
        last = running_with_label(label);
        if matches!(last, Ok(n) if n >= want) {
            return Ok(t0.elapsed());
        }
        std::thread::sleep(POLL);
    }
    Err(format!(
        "{want} containers labelled {label} not running after {limit:?} (last count: {last:?})"
    ))
}

// ---------------------------------------------------------------------------
// Recording and figures
// ---------------------------------------------------------------------------

/// Runs one measure; a panic in it (a set-up step that timed out) is its
/// failure, with the panic's message. Guards inside it clean up while
/// unwinding.
pub(crate) fn attempt<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let r = caught(f);
    if let Err(e) = &r {
        eprintln!("control: {what} FAILED: {e}");
    }
    r
}

/// Runs `f`; a panic in it becomes an error carrying the panic's message.
pub(crate) fn caught<T>(f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "panicked".into());
        Err(format!("panicked: {msg}"))
    })
}

/// The median of `v` (the upper one of an even count), if any.
pub(crate) fn median(v: &[f64]) -> Option<f64> {
    percentile(v, 50.0)
}

/// Nearest-rank percentile `p` of `v` (of 10 values, p99 is the largest).
pub(crate) fn percentile(v: &[f64], p: f64) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v.get(rank.clamp(1, v.len()) - 1).copied()
}

/// `a / b` with two decimals, `-` when either is missing or `b` is zero.
pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "-".into(),
    }
}

/// `min | median | max` of `v` with `digits` decimals.
pub(crate) fn spread(v: &[f64], digits: usize) -> String {
    let f = |x: Option<f64>| x.map_or("-".into(), |x| format!("{x:.digits$}"));
    let min = v.iter().copied().min_by(f64::total_cmp);
    let max = v.iter().copied().max_by(f64::total_cmp);
    format!("{} | {} | {}", f(min), f(median(v)), f(max))
}

/// The failures of a measure as a list for the document (empty when none).
pub(crate) fn failures(list: &[(String, String)]) -> String {
    if list.is_empty() {
        return String::new();
    }
    let mut s = String::from("\nFailed runs (details in the run's stderr):\n\n");
    for (what, e) in list {
        let first = e.lines().next().unwrap_or_default();
        let first: String = first.chars().take(300).collect();
        let _ = writeln!(s, "- {what}: {first}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(5.0));
        assert_eq!(percentile(&v, 99.0), Some(10.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(median(&[2.0, 1.0, 3.0]), Some(2.0));
    }

    #[test]
    fn filters_are_percent_encoded() {
        assert_eq!(
            percent_encode(r#"{"label":["a=b"]}"#),
            "%7B%22label%22%3A%5B%22a%3Db%22%5D%7D"
        );
    }
}
