//! Self-tests of the e2e harness (`skein_e2e`): the pieces that work without
//! the real agent. `Agent` is exercised against `skein-fake-agent`, a stand-in
//! binary of this crate that follows the agent's start-up contract. The Docker
//! tests need the demo image (`scripts/build-demo-image.sh`).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skein_e2e::*;

const FAKE_AGENT: &str = env!("CARGO_BIN_EXE_skein-fake-agent");

fn fake_opts() -> AgentOpts {
    AgentOpts {
        bin: Some(PathBuf::from(FAKE_AGENT)),
        ..AgentOpts::default()
    }
}

/// The message of a caught panic.
fn panic_message(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

// --- skein_bin --------------------------------------------------------------

#[test]
fn skein_bin_prefers_skein_bin_env() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("my-skein");
    std::fs::write(&bin, b"").unwrap();
    let exe = Path::new("/nowhere/target/debug/deps/harness_smoke-0123");
    assert_eq!(resolve_skein_bin(Some(bin.clone().into()), exe), Ok(bin));
}

#[test]
fn skein_bin_env_pointing_nowhere_is_an_error() {
    let exe = Path::new("/nowhere/target/debug/deps/harness_smoke-0123");
    let err = resolve_skein_bin(Some("/definitely/not/here/skein".into()), exe).unwrap_err();
    assert!(err.contains("SKEIN_BIN"), "{err}");
}

#[test]
fn skein_bin_defaults_to_the_target_dir_of_the_test() {
    let dir = tempfile::tempdir().unwrap();
    let deps = dir.path().join("target/debug/deps");
    std::fs::create_dir_all(&deps).unwrap();
    let exe = deps.join("harness_smoke-0123");
    // Missing: the error says to build first.
    let err = resolve_skein_bin(None, &exe).unwrap_err();
    assert!(err.contains("cargo build"), "{err}");
    // An empty SKEIN_BIN counts as unset.
    assert!(resolve_skein_bin(Some("".into()), &exe).is_err());
    let bin = dir.path().join("target/debug/skein");
    std::fs::write(&bin, b"").unwrap();
    assert_eq!(resolve_skein_bin(None, &exe), Ok(bin.clone()));
    assert_eq!(resolve_skein_bin(Some("".into()), &exe), Ok(bin));
}

// --- polling ----------------------------------------------------------------

#[test]
fn poll_until_returns_the_first_some() {
    let mut calls = 0;
    let v = poll_until("the third call", Duration::from_secs(10), || {
        calls += 1;
        (calls == 3).then_some(calls * 10)
    });
    assert_eq!(v, 30);
    assert_eq!(calls, 3);
}

#[test]
#[should_panic(expected = "waiting for the impossible")]
fn poll_until_panics_on_timeout() {
    poll_until("the impossible", Duration::from_millis(300), || None::<()>);
}

#[test]
fn poll_until_respects_its_deadline() {
    let start = Instant::now();
    let r = catch_unwind(|| poll_until("nothing", Duration::from_millis(500), || None::<()>));
    let elapsed = start.elapsed();
    let msg = panic_message(&*r.unwrap_err());
    assert!(msg.contains("timed out after"), "{msg}");
    assert!(elapsed >= Duration::from_millis(500), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "{elapsed:?}");
}

#[test]
fn poll_until_ok_reports_the_last_error() {
    let mut n = 0;
    let r = catch_unwind(AssertUnwindSafe(|| {
        poll_until_ok("a miracle", Duration::from_millis(300), || {
            n += 1;
            Err::<(), _>(format!("attempt {n} failed"))
        })
    }));
    let msg = panic_message(&*r.unwrap_err());
    assert!(msg.contains("waiting for a miracle"), "{msg}");
    assert!(msg.contains(&format!("attempt {n} failed")), "{msg}");
    assert!(n >= 2, "polled only {n} times");
}

// --- names and manifests ----------------------------------------------------

#[test]
fn unique_name_is_a_unique_dns_label() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..2000 {
        let n = unique_name("web");
        assert!(is_dns_label(&n), "{n}");
        assert!(n.starts_with("web-") && n.len() == 10, "{n}");
        assert!(seen.insert(n.clone()), "duplicate {n}");
    }
    for prefix in ["Web_App", "9lives", "", "a-", &"x".repeat(80), "café"] {
        let n = unique_name(prefix);
        assert!(is_dns_label(&n), "{prefix:?} -> {n}");
    }
}

#[test]
fn manifests_are_written_verbatim() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dedent(
        "
        name: web
        containers:
          - name: web
            image: skein-demo/web:latest
        ",
    );
    assert!(
        yaml.starts_with("name: web\ncontainers:\n  - name: web\n"),
        "{yaml}"
    );
    let p = write_manifest(&dir.path().join("sub"), "web", &yaml);
    assert_eq!(p, dir.path().join("sub/web.yaml"));
    assert_eq!(std::fs::read_to_string(&p).unwrap(), yaml);
    let p = write_manifest(dir.path(), "job.json", "{}");
    assert_eq!(p, dir.path().join("job.json"));
}

// --- port ranges ------------------------------------------------------------

#[test]
fn port_ranges_are_disjoint_and_outside_the_ephemeral_range() {
    let eph = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let mut eph = eph.split_whitespace().map(|x| x.parse::<u16>().unwrap());
    let (lo, hi) = (eph.next().unwrap(), eph.next().unwrap());
    let ranges: Vec<PortRange> = (0..5).map(|_| reserve_port_range()).collect();
    for (i, r) in ranges.iter().enumerate() {
        assert_eq!(r.last - r.first + 1, PORT_RANGE_LEN);
        assert!(
            r.first >= PORT_SPAN_START && r.last <= PORT_SPAN_END,
            "{r:?}"
        );
        assert!(r.last < lo || r.first > hi, "{r:?} overlaps {lo}-{hi}");
        assert_eq!(r.arg(), format!("{}-{}", r.first, r.last));
        for o in &ranges[i + 1..] {
            assert!(r.last < o.first || o.last < r.first, "{r:?} overlaps {o:?}");
        }
    }
}

// --- commands ---------------------------------------------------------------

#[test]
fn run_with_timeout_kills_hung_commands() {
    let start = Instant::now();
    let r = catch_unwind(|| {
        run_with_timeout(
            std::process::Command::new("sleep").arg("30"),
            Duration::from_millis(300),
        )
    });
    let msg = panic_message(&*r.unwrap_err());
    assert!(msg.contains("timed out"), "{msg}");
    assert!(start.elapsed() < Duration::from_secs(5));
}

// --- Agent, against the fake agent -----------------------------------------

#[test]
fn agent_lifecycle_with_the_fake_agent() {
    let mut a = Agent::start(AgentOpts {
        name: Some("n1".into()),
        labels: vec![("zone".into(), "a".into())],
        ..fake_opts()
    });
    let id = a.node_id().to_string();
    assert!(
        id.len() == 16 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(
        std::fs::read_to_string(a.data_dir().join("node-id")).unwrap(),
        id
    );
    assert!(a.api().starts_with("127.0.0.1:"), "{}", a.api());

    // HTTP: statuses other than 2xx come back as values.
    let (code, body) = a.http_get("/v1/status");
    assert_eq!(code, 200, "{body}");
    assert_eq!(a.status()["node_name"], "n1");
    let (code, body) = a.http_get("/v1/nope");
    assert_eq!(code, 404);
    let err: Value = serde_json::from_str(&body).unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("/v1/nope"),
        "{body}"
    );
    let (code, body) = a.http_post("v1/echo", br#"{"x":1}"#);
    assert_eq!((code, body.as_str()), (200, r#"{"x":1}"#));
    assert_eq!(a.wait_for_leader(Duration::from_secs(5))["leader_id"], id);

    // CLI.
    let nodes = a.cli_json(&["node", "ls"]);
    assert_eq!(nodes[0]["node_id"], id);
    let out = a.cli(&["fail"]);
    assert_eq!(out.code(), Some(3), "{out}");
    assert!(out.stderr.contains("failing as asked"), "{out}");
    let r = catch_unwind(AssertUnwindSafe(|| {
        a.cli_timeout(Duration::from_millis(300), &["hang"])
    }));
    assert!(panic_message(&*r.unwrap_err()).contains("timed out"));

    // The log has the agent's stderr and the harness's start line.
    let tail = a.log_tail(100);
    assert!(tail.contains("=== skein-e2e: start #1"), "{tail}");
    assert!(tail.contains("--label zone=a"), "{tail}");
    assert!(tail.contains("fake agent: listening on"), "{tail}");

    // kill -9 and restart: same node, same port range, new address.
    let ports = a.port_range().arg();
    let pid = a.pid().unwrap();
    a.kill9();
    assert!(!a.is_running());
    a.restart();
    assert!(a.is_running());
    assert_ne!(a.pid(), Some(pid));
    assert_eq!(a.node_id(), id);
    assert_eq!(a.port_range().arg(), ports);
    assert_eq!(a.http_get("/v1/status").0, 200);
    assert!(a.log_tail(100).contains("=== skein-e2e: start #2"));

    // A graceful stop of the fake agent (no SIGTERM handler) ends it.
    assert!(a.terminate(Duration::from_secs(5)).is_some());
    assert!(!a.is_running());
}

#[test]
fn agent_start_reports_an_early_exit_with_the_log() {
    let start = Instant::now();
    let r = catch_unwind(|| Agent::start(fake_opts().arg("--fake-exit-early")));
    let msg = panic_message(&*r.unwrap_err());
    assert!(msg.contains("exited with"), "{msg}");
    assert!(msg.contains("exiting early as asked"), "{msg}");
    assert!(start.elapsed() < Duration::from_secs(10));
}

#[test]
fn agent_start_times_out_with_the_log() {
    let opts = AgentOpts {
        ready_timeout: Some(Duration::from_millis(800)),
        ..fake_opts().arg("--fake-no-api")
    };
    let r = catch_unwind(|| Agent::start(opts));
    let msg = panic_message(&*r.unwrap_err());
    assert!(msg.contains("not ready after"), "{msg}");
    assert!(msg.contains("not serving the API"), "{msg}");
}

#[test]
fn dropping_an_agent_removes_its_containers() {
    require_demo_image();
    let a = Agent::start(fake_opts().arg("--fake-container").arg(DEMO_IMAGE));
    let filter = format!("skein.node={}", a.node_id());
    let ids = poll_until(
        "the fake agent's container",
        Duration::from_secs(20),
        || {
            let ids = containers_with_label(&filter);
            (!ids.is_empty()).then_some(ids)
        },
    );
    assert_eq!(a.containers(), ids);
    assert_eq!(a.job_containers("fake"), ids);
    assert!(a.job_containers("other").is_empty());
    let labels = container_labels(&ids[0]);
    assert_eq!(labels["skein.node"], a.node_id());
    assert_eq!(labels["skein.job"], "fake");
    drop(a);
    assert!(containers_with_label(&filter).is_empty());
}

#[test]
fn a_panicking_test_still_removes_its_agents_containers() {
    require_demo_image();
    let mut filter = String::new();
    let r = catch_unwind(AssertUnwindSafe(|| {
        let a = Agent::start(fake_opts().arg("--fake-container").arg(DEMO_IMAGE));
        filter = format!("skein.node={}", a.node_id());
        poll_until(
            "the fake agent's container",
            Duration::from_secs(20),
            || (!a.containers().is_empty()).then_some(()),
        );
        panic!("deliberate test failure");
    }));
    assert!(panic_message(&*r.unwrap_err()).contains("deliberate"));
    assert!(!filter.is_empty());
    assert!(containers_with_label(&filter).is_empty());
}

// --- Docker and the demo image ----------------------------------------------

#[test]
fn demo_image_serves_http() {
    require_demo_image();
    let label = format!("skein.test={}", unique_name("smoke"));
    let c = ContainerGuard::create(&[
        "run",
        "-d",
        "-p",
        "127.0.0.1::80",
        "--label",
        &label,
        DEMO_IMAGE,
    ]);
    assert_eq!(containers_with_label(&label), vec![c.id().to_string()]);
    assert_eq!(
        containers_with_labels(&[&label, "skein.demo=1"]),
        vec![c.id().to_string()]
    );
    assert!(containers_with_labels(&[&label, "skein.demo=2"]).is_empty());
    let labels = container_labels(c.id());
    assert_eq!(labels.get("skein.demo").map(String::as_str), Some("1"));
    let inspect = container_inspect(c.id());
    let host_port = inspect["NetworkSettings"]["Ports"]["80/tcp"][0]["HostPort"]
        .as_str()
        .unwrap_or_else(|| panic!("no published port: {inspect}"))
        .to_string();
    let url = format!("http://127.0.0.1:{host_port}/");
    let body = poll_until_ok(
        "the demo container to serve HTTP",
        Duration::from_secs(20),
        || match http_get_url(&url)? {
            (200, body) => Ok(body),
            (code, body) => Err(format!("{code}: {body}")),
        },
    );
    assert_eq!(body, format!("hello from {}\n", &c.id()[..12]));
}

#[test]
fn container_guard_removes_on_panic() {
    require_demo_image();
    let label = format!("skein.test={}", unique_name("guard"));
    let r = catch_unwind(|| {
        let _c = ContainerGuard::create(&["create", "--label", &label, DEMO_IMAGE]);
        assert_eq!(containers_with_label(&label).len(), 1);
        panic!("deliberate");
    });
    assert!(r.is_err());
    assert!(containers_with_label(&label).is_empty());
}

#[test]
fn inspecting_a_vanished_container() {
    assert!(try_container_inspect("skein-e2e-no-such-container").is_none());
    let r = catch_unwind(|| container_labels("skein-e2e-no-such-container"));
    assert!(r.is_err());
}

#[test]
fn docker_failures_carry_stderr() {
    let err = try_docker(&["inspect", "skein-e2e-no-such-container"]).unwrap_err();
    assert!(err.to_lowercase().contains("no such"), "{err}");
    let r = catch_unwind(|| docker(&["inspect", "skein-e2e-no-such-container"]));
    assert!(panic_message(&*r.unwrap_err())
        .to_lowercase()
        .contains("no such"));
}
