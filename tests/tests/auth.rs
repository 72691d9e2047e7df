//! API access end to end: tokens held in cluster state and enforced by
//! every node (forwarded calls included), bootstrap token files, roles,
//! revocation, the cross-site guard (Origin, JSON content type), the
//! case-insensitive bearer scheme and JSON error bodies everywhere.

use std::time::Duration;

use serde_json::Value;
use skein_e2e::*;

const WAIT: Duration = Duration::from_secs(60);
const JSON: (&str, &str) = ("content-type", "application/json");

/// A request body applying one job with no replicas (no container starts).
fn job_body(name: &str) -> Vec<u8> {
    format!(r#"{{"jobs":[{{"name":"{name}","replicas":0,"image":"skein-demo/web:latest"}}]}}"#)
        .into_bytes()
}

fn url(agent: &Agent, path: &str) -> String {
    format!("{}{path}", agent.base_url())
}

/// `METHOD path` on `agent`, with a bearer token when given.
fn call(agent: &Agent, method: &str, path: &str, token: Option<&str>, body: &[u8]) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![JSON];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let (code, text) = http_raw(method, &url(agent, path), &headers, body).unwrap();
    (
        code,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The `error` of an API error body, checking that it is one.
fn error_of(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("not a JSON ApiError body: {body}"))
}

/// Two agents on loopback: `a` creates the cluster, `b` joins it.
fn pair(a_args: &[&str], b_args: &[&str]) -> LoopbackPair {
    let with = |mut o: AgentOpts, args: &[&str]| {
        for arg in args {
            o = o.arg(arg);
        }
        o
    };
    LoopbackPair::start(
        with(AgentOpts::named("a"), a_args),
        with(AgentOpts::named("b"), b_args),
    )
}

/// Waits until `agent` answers `GET path` with `token` by `code`.
fn wait_code(agent: &Agent, path: &str, token: Option<&str>, code: u16) {
    poll_until(&format!("GET {path} answers {code}"), WAIT, || {
        (call(agent, "GET", path, token, b"").0 == code).then_some(())
    });
}

#[test]
fn a_follower_without_the_token_file_is_no_open_door() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "s3cret\n").unwrap();
    let p = pair(&["--api-token-file", file.to_str().unwrap()], &[]);
    let (a, b) = (&p.a, &p.b);
    poll_until("b is a member of a's cluster", WAIT, || {
        let (code, nodes) = call(a, "GET", "/v1/nodes", Some("s3cret"), b"");
        (code == 200 && nodes.as_array()?.len() == 2).then_some(())
    });

    // The issue's repro: a write through the node without a token file.
    let (code, body) = call(b, "POST", "/v1/jobs", None, &job_body("open-door"));
    assert_eq!(code, 401, "{body}");
    assert!(error_of(&body).contains("requires an API token"), "{body}");
    let (code, body) = call(b, "GET", "/v1/jobs", None, b"");
    assert_eq!(code, 401, "reads too: {body}");
    let (code, _) = call(b, "GET", "/v1/status", None, b"");
    assert_eq!(code, 200, "the status stays public");
    poll_until("b says it enforces the cluster's tokens", WAIT, || {
        let log = std::fs::read_to_string(b.log_path()).ok()?;
        log.contains("every call except /v1/status and the dashboard's files needs a token")
            .then_some(())
    });

    // a's bootstrap token works through b (forwarded with the call).
    let (code, body) = call(b, "POST", "/v1/jobs", Some("s3cret"), &job_body("via-b"));
    assert_eq!(code, 200, "{body}");

    // Tokens made with the CLI bind both nodes, by role.
    let out = b.cli(&["--token", "s3cret", "token", "create", "--name", "viewer"]);
    out.assert_success();
    let viewer = out.stdout.trim().to_string();
    assert!(
        viewer.starts_with("skein_") && viewer.len() > 60,
        "{viewer}"
    );
    assert!(
        out.stderr.contains("shown only this once"),
        "{}",
        out.stderr
    );
    let created = b.cli_json(&[
        "--token", "s3cret", "token", "create", "--role", "write", "--name", "ci",
    ]);
    let ci = created["token"].as_str().unwrap().to_string();
    assert_eq!(created["role"], "write");
    for node in [a, b] {
        wait_code(node, "/v1/jobs", Some(&viewer), 200);
        let (code, body) = call(node, "POST", "/v1/jobs", Some(&viewer), &job_body("ro"));
        assert_eq!(code, 403, "{body}");
        assert!(error_of(&body).contains("read role"), "{body}");
        let (code, body) = call(node, "POST", "/v1/plan", Some(&viewer), &job_body("p"));
        assert_eq!(code, 403, "a plan is a write: {body}");
        wait_code(node, "/v1/jobs", Some(&ci), 200);
        let (code, body) = call(node, "POST", "/v1/jobs", Some(&ci), &job_body("ci"));
        assert_eq!(code, 200, "{body}");
        let (code, body) = call(node, "GET", "/v1/tokens", Some(&ci), b"");
        assert_eq!(code, 403, "token management is admin only: {body}");
    }

    // Listings show names and roles, never a secret.
    let ls = b.cli(&["--token", "s3cret", "-o", "json", "token", "ls"]);
    ls.assert_success();
    for secret in ["s3cret", viewer.as_str(), ci.as_str()] {
        assert!(!ls.stdout.contains(secret), "{}", ls.stdout);
    }
    let list: Value = serde_json::from_str(&ls.stdout).unwrap();
    let names: Vec<(&str, &str, &str)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap(),
                t["role"].as_str().unwrap(),
                t["source"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("bootstrap", "admin", "bootstrap a"),
            ("ci", "write", "created"),
            ("viewer", "read", "created")
        ]
    );
    let table = a.cli(&["--token", "s3cret", "token", "ls"]);
    assert!(table.stdout.contains("viewer"), "{}", table.stdout);

    // Revoked: refused everywhere. The last admin token stays.
    b.cli(&["--token", "s3cret", "token", "revoke", "viewer"])
        .assert_success();
    for node in [a, b] {
        wait_code(node, "/v1/jobs", Some(&viewer), 401);
    }
    let last = b.cli(&["--token", "s3cret", "token", "revoke", "bootstrap"]);
    last.assert_failure();
    assert!(last.stderr.contains("last admin token"), "{}", last.stderr);
}

#[test]
fn a_joining_nodes_token_file_binds_the_whole_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "j0in-t0ken").unwrap();
    let p = pair(&[], &["--api-token-file", file.to_str().unwrap()]);
    // a had no token at all; once b registered its file, a requires it.
    wait_code(&p.a, "/v1/jobs", None, 401);
    let (code, body) = call(&p.a, "POST", "/v1/jobs", None, &job_body("x"));
    assert_eq!(code, 401, "{body}");
    let (code, body) = call(&p.a, "POST", "/v1/jobs", Some("j0in-t0ken"), &job_body("x"));
    assert_eq!(code, 200, "{body}");
    let list = p.a.cli_json(&["--token", "j0in-t0ken", "token", "ls"]);
    assert_eq!(list[0]["name"], "bootstrap");
    assert_eq!(list[0]["source"], "bootstrap b");
    poll_until(
        "b says its token file is stored in the cluster",
        WAIT,
        || {
            let log = std::fs::read_to_string(p.b.log_path()).ok()?;
            log.contains("stored in cluster state as an admin token")
                .then_some(())
        },
    );
}

#[test]
fn web_pages_cannot_drive_an_open_node() {
    let agent = Agent::start(AgentOpts::default());
    let jobs = url(&agent, "/v1/jobs");
    let evil = ("origin", "http://evil.example");
    let text = ("content-type", "text/plain");
    // The issue's repro: a "simple" cross-site request a page may send.
    let (code, body) = http_raw("POST", &jobs, &[text, evil], &job_body("csrf")).unwrap();
    assert_eq!(code, 403, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(error_of(&body).contains("cross-origin"), "{body}");
    // Without an Origin (a form-less script, curl): the type still matters.
    let (code, body) = http_raw("POST", &jobs, &[text], &job_body("csrf")).unwrap();
    assert_eq!(code, 415, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(error_of(&body).contains("application/json"), "{body}");
    let form = ("content-type", "application/x-www-form-urlencoded");
    let (code, _) = http_raw("POST", &jobs, &[form], &job_body("csrf")).unwrap();
    assert_eq!(code, 415);
    let (code, _) = http_raw("POST", &jobs, &[], &job_body("csrf")).unwrap();
    assert_eq!(code, 415, "a body without a content type");
    let (code, _) = http_raw("POST", &jobs, &[JSON, evil], &job_body("csrf")).unwrap();
    assert_eq!(code, 403, "a foreign origin, whatever the type");
    let (code, _) = http_raw("GET", &jobs, &[evil], b"").unwrap();
    assert_eq!(code, 403, "reads too");
    assert_eq!(agent.cli_json(&["job", "ls"]), json!([]), "nothing applied");

    // The node's own pages (the dashboard) send its own origin.
    let own = format!("http://{}", agent.api());
    let plan = url(&agent, "/v1/plan");
    let (code, body) = http_raw(
        "POST",
        &plan,
        &[JSON, ("origin", own.as_str())],
        &job_body("ok"),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let (code, body) = http_raw("POST", &plan, &[JSON], &job_body("ok")).unwrap();
    assert_eq!(code, 200, "{body}");
}

#[test]
fn the_bearer_scheme_is_case_insensitive() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "c4se").unwrap();
    let agent = Agent::start(
        AgentOpts::default()
            .arg("--api-token-file")
            .arg(file.to_str().unwrap()),
    );
    let jobs = url(&agent, "/v1/jobs");
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let auth = format!("{scheme} c4se");
        let (code, body) = http_raw("GET", &jobs, &[("authorization", &auth)], b"").unwrap();
        assert_eq!(code, 200, "{scheme}: {body}");
    }
    let (code, body) = http_raw("GET", &jobs, &[("authorization", "Basic c4se")], b"").unwrap();
    assert_eq!(code, 401, "{body}");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert!(error_of(&body).contains("Bearer"), "{body}");
    let (code, body) = http_raw("GET", &url(&agent, "/v1/nope"), &[], b"").unwrap();
    assert_eq!(code, 401, "unknown paths need the token too: {body}");
}

#[test]
fn every_api_error_is_a_json_body() {
    let agent = Agent::start(AgentOpts::default());
    for (method, path, code) in [
        ("GET", "/v1/nope", 404),
        ("POST", "/v1/nope", 404),
        ("GET", "/v1/events?after=soon", 400),
        ("GET", "/v1/allocs?job=a&job=b", 400),
        ("GET", "/v1/allocs/x/logs?tail=-1", 400),
        ("DELETE", "/v1/nodes", 405),
    ] {
        let (got, body) = http_raw(method, &url(&agent, path), &[], b"").unwrap();
        assert_eq!(got, code, "{method} {path}: {body}");
        let body: Value = serde_json::from_str(&body)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {body:?}"));
        assert!(!error_of(&body).is_empty(), "{method} {path}: {body}");
    }
}

#[test]
fn the_first_token_locks_an_open_node() {
    let agent = Agent::start(AgentOpts::default());
    let first = agent.cli(&["token", "create", "--role", "read"]);
    first.assert_failure();
    assert!(
        first.stderr.contains("admin token first"),
        "{}",
        first.stderr
    );
    let out = agent.cli(&["token", "create", "--role", "admin", "--name", "ops"]);
    out.assert_success();
    let ops = out.stdout.trim().to_string();
    let (code, body) = call(&agent, "GET", "/v1/jobs", None, b"");
    assert_eq!(code, 401, "locked at once: {body}");
    let (code, body) = call(&agent, "GET", "/v1/jobs", Some(&ops), b"");
    assert_eq!(code, 200, "{body}");
    poll_until("the node said it was open, then locked", WAIT, || {
        let log = std::fs::read_to_string(agent.log_path()).ok()?;
        (log.contains("the API is open") && log.contains("1 in the cluster")).then_some(())
    });
    let log = std::fs::read_to_string(agent.log_path()).unwrap();
    assert!(!log.contains(&ops), "the secret is not logged");
}

#[test]
fn logs_relayed_from_another_node_act_for_the_caller() {
    require_demo_image();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "l0gs").unwrap();
    let p = pair(
        &[
            "--api-token-file",
            file.to_str().unwrap(),
            "--label",
            "zone=a",
        ],
        &["--label", "zone=b", "--container-dns", "none"],
    );
    let (a, b) = (&p.a, &p.b);
    // b relays a's calls only once it enforces the same tokens.
    wait_code(b, "/v1/jobs", None, 401);
    let job = unique_name("ticker");
    let manifest = a.write_manifest(
        "ticker.yaml",
        &format!(
            "name: {job}\nimage: skein-demo/web:latest\nconstraints: {{zone: b}}\n\
             command: [/bin/sh, -c, 'i=0; while true; do i=$((i+1)); echo tick-$i; sleep 0.2; done']\n"
        ),
    );
    a.cli_timeout(
        WAIT,
        &["--token", "l0gs", "apply", "-f", manifest.to_str().unwrap()],
    )
    .assert_success();
    let allocs = a.cli_json(&["--token", "l0gs", "alloc", "ls", "--job", &job]);
    let alloc = allocs[0]["id"].as_str().unwrap().to_string();
    assert_eq!(allocs[0]["node_id"].as_str(), Some(b.node_id()));
    let reader = a.cli(&["--token", "l0gs", "token", "create", "--name", "reader"]);
    reader.assert_success();
    let reader = reader.stdout.trim().to_string();
    // Asked on a, served by b: b checks the caller's own token.
    for token in ["l0gs", reader.as_str()] {
        poll_until("ticks relayed from b", WAIT, || {
            let o = a.cli(&["--token", token, "logs", &alloc, "--tail", "3"]);
            (o.success() && o.stdout.contains("tick-")).then_some(())
        });
    }
    let anon = a.cli(&["logs", &alloc, "--tail", "3"]);
    anon.assert_failure();
    assert!(
        anon.stderr.contains("requires an API token"),
        "{}",
        anon.stderr
    );
}
