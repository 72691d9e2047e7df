//! Images reach every node: pulls from a real registry (with and without
//! credentials) and copies between peers that have separate Docker
//! Engines, with no registry at all.
//!
//! Two agents on loopback: node `a` on the host's engine, node `b` on a
//! second engine this test starts (its own image store, bridge and
//! containerd), so an image on one is truly absent from the other.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use skein_e2e::engine::Engine;
use skein_e2e::images::unique_image;
use skein_e2e::registry::{base64, run_with_stdin, Registry};
use skein_e2e::*;

const WAIT: Duration = Duration::from_secs(120);

/// Node `a` (host engine, bootstraps) and node `b` (`engine`, joins `a`).
fn pair(engine: &Engine, a_env: &[(&str, &str)]) -> LoopbackPair {
    require_demo_image();
    let mut a = AgentOpts::named("a").label("node", "a").steady();
    for (k, v) in a_env {
        a = a.env(k, v);
    }
    let b = AgentOpts::named("b")
        .label("node", "b")
        .steady()
        .docker_host(&engine.host());
    let p = LoopbackPair::start(a, b);
    p.wait_joined(WAIT);
    p
}

/// Allocations of `job` as node `agent` serves them.
fn allocs(agent: &Agent, job: &str) -> Vec<Value> {
    let (code, body) = agent.http_get(&format!("/v1/allocs?job={job}"));
    if code != 200 {
        return Vec::new();
    }
    serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// Events of `kinds` as `agent` lists them.
fn events(agent: &Agent, kinds: &str) -> Vec<Value> {
    agent
        .cli_json(&["events", "--kind", kinds, "--tail", "500"])
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Per node name, how many events of `kind` it reported.
fn per_node(agent: &Agent, kind: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for e in events(agent, kind) {
        if let Some(n) = e["node"].as_str() {
            *out.entry(n.to_string()).or_insert(0) += 1;
        }
    }
    out
}

/// The value of one metric sample line (`name{labels} value`) on `agent`.
fn metric(agent: &Agent, line_start: &str) -> Option<f64> {
    let (_, text) = agent.http_get("/metrics");
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn apply(agent: &Agent, file: &str, yaml: &str) -> CliOutput {
    let path = agent.write_manifest(file, yaml);
    agent.cli_timeout(WAIT, &["apply", "-f", path.to_str().unwrap()])
}

#[test]
fn registry_pull_once_per_node_shows_progress_and_a_bad_tag_fails_clearly() {
    let engine = Engine::start();
    let registry = Registry::start();
    let img = unique_image("pull", 32);
    let name = unique_name("pulled");
    let reference = registry.push(&img.reference, &format!("skein-test/{name}:v1"));
    // Neither engine has it now: both nodes must download it.
    docker(&["rmi", "-f", &img.reference]);
    assert!(!image_exists(&reference));
    let p = pair(&engine, &[]);
    assert!(!engine.has_image(&reference));

    // Sample node a's view while the apply runs: `pulling` must be seen.
    let job = name.clone();
    let sampler = {
        let api = p.a.base_url();
        let job = job.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + WAIT;
            let mut seen: Vec<Value> = Vec::new();
            while Instant::now() < deadline {
                if let Ok((200, body)) = http_get_url(&format!("{api}/v1/allocs?job={job}")) {
                    let v: Value = serde_json::from_str(&body).unwrap_or_default();
                    let list = v.as_array().cloned().unwrap_or_default();
                    seen.extend(
                        list.iter()
                            .filter(|a| a["status"]["state"] == "pulling")
                            .cloned(),
                    );
                    let running = list
                        .iter()
                        .filter(|a| a["status"]["state"] == "running")
                        .count();
                    if running == 2 {
                        return seen;
                    }
                }
                std::thread::sleep(Duration::from_millis(40));
            }
            seen
        })
    };
    let out = apply(
        &p.a,
        "pulled.yaml",
        &format!("name: {job}\nreplicas: 2\nimage: {reference}\n"),
    );
    out.assert_success();
    let pulling = sampler.join().unwrap();
    assert!(
        !pulling.is_empty(),
        "no `pulling` state was seen while the image was fetched\n{}",
        out.stdout
    );
    // Progress names the registry and counts bytes and layers.
    let progress: Vec<&Value> = pulling
        .iter()
        .map(|a| &a["status"]["pull"])
        .filter(|p| {
            p["source"]
                .as_str()
                .is_some_and(|s| s.contains(&registry.addr()))
        })
        .collect();
    assert!(
        !progress.is_empty(),
        "no pull from the registry among {pulling:#?}"
    );
    eprintln!(
        "pulling seen {} times, e.g. {}",
        pulling.len(),
        progress.last().map(|p| p.to_string()).unwrap_or_default()
    );

    // One replica per node, each node pulled once.
    let on: Vec<String> = allocs(&p.a, &job)
        .iter()
        .map(|a| a["node_name"].as_str().unwrap_or("").to_string())
        .collect();
    let mut on_sorted = on.clone();
    on_sorted.sort();
    assert_eq!(on_sorted, ["a", "b"], "{on:?}");
    assert!(engine.has_image(&reference) && image_exists(&reference));
    let pulled = poll_until("image_pulled events from both nodes", WAIT, || {
        let m = per_node(&p.a, "image_pulled");
        (m.len() == 2).then_some(m)
    });
    assert_eq!(
        pulled.values().copied().collect::<Vec<_>>(),
        [1, 1],
        "{pulled:?}"
    );
    for agent in [&p.a, &p.b] {
        let ok = r#"skein_image_pulls_total{source="registry",result="ok"}"#;
        assert_eq!(metric(agent, ok), Some(1.0), "one pull on each node");
        let bytes = r#"skein_image_pull_bytes_total{source="registry"}"#;
        assert!(metric(agent, bytes).unwrap_or(0.0) > 30e6, "bytes counted");
    }

    // A tag the registry does not have: a clear error, at once, and the
    // running job is not disturbed.
    let bad = unique_name("badtag");
    let missing = reference.replace(":v1", ":nope");
    let started = Instant::now();
    let out = apply(
        &p.a,
        "bad.yaml",
        &format!("name: {bad}\nimage: {missing}\n"),
    );
    out.assert_failure();
    assert!(
        out.stderr.contains("not found") && out.stderr.contains(&missing),
        "{}",
        out.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a permanent error is shown at once, not after retries ({:?})",
        started.elapsed()
    );
    let failed = allocs(&p.a, &bad);
    assert_eq!(failed[0]["status"]["state"], "failed", "{failed:?}");
    assert!(
        failed[0]["status"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("manifest unknown") || m.contains("not found")),
        "{failed:?}"
    );
    let table = p.a.cli(&["alloc", "ls", "--job", &bad]);
    assert!(table.stdout.contains("failed"), "{}", table.stdout);
    let failures = events(&p.a, "image_pull_failed");
    assert!(
        failures
            .iter()
            .any(|e| e["message"].as_str().is_some_and(|m| m.contains(&missing))),
        "{failures:?}"
    );
    let running = allocs(&p.a, &job)
        .iter()
        .filter(|a| a["status"]["state"] == "running")
        .count();
    assert_eq!(running, 2, "the first job kept running");
}

#[test]
fn private_registry_needs_credentials_and_never_shows_them() {
    let password = format!("pw-{}", unique_name("secret"));
    let engine = Engine::start();
    let registry = Registry::start_with_auth("skein", &password);
    let img = unique_image("private", 4);
    let img2 = unique_image("private2", 4);
    let name = unique_name("private");
    let reference = registry.push(&img.reference, &format!("skein-test/{name}:v1"));
    let reference2 = registry.push(&img2.reference, &format!("skein-test/{name}-k8s:v1"));
    docker(&["rmi", "-f", &img.reference]);
    docker(&["rmi", "-f", &img2.reference]);
    let p = pair(&engine, &[]);

    // No credentials: the registry's refusal, shown at once.
    let job = name.clone();
    let out = apply(
        &p.a,
        "private.yaml",
        &format!("name: {job}\nreplicas: 2\nimage: {reference}\n"),
    );
    out.assert_failure();
    assert!(
        out.stderr.contains("no basic auth credentials")
            || out.stderr.contains("unauthorized")
            || out.stderr.contains("authentication required"),
        "{}",
        out.stderr
    );

    // `registry login`: every node pulls with it, the waiting replicas retry.
    let login = p.b.cli_command(&[
        "registry",
        "login",
        &registry.addr(),
        "--username",
        "skein",
        "--password-stdin",
    ]);
    run_with_stdin(login, password.as_bytes(), WAIT).assert_success();
    poll_until("both replicas running after the login", WAIT, || {
        let running = allocs(&p.a, &job)
            .iter()
            .filter(|a| a["status"]["state"] == "running")
            .count();
        (running == 2).then_some(())
    });
    assert!(engine.has_image(&reference) && image_exists(&reference));
    let ls = p.a.cli_json(&["registry", "ls"]);
    assert_eq!(ls[0]["server"], registry.addr(), "{ls}");
    assert_eq!(ls[0]["username"], "skein", "{ls}");

    // Kubernetes: imagePullSecrets naming a dockerconfigjson Secret in the
    // same file (after a logout, so only the Secret can open the registry).
    p.a.cli(&["registry", "logout", &registry.addr()])
        .assert_success();
    let auths = serde_json::json!({ "auths": { registry.addr(): {
        "username": "skein", "password": password } } })
    .to_string();
    let k8s = unique_name("k8s");
    let manifest = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: regcred}}\n\
         type: kubernetes.io/dockerconfigjson\nstringData:\n  .dockerconfigjson: '{auths}'\n\
         ---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {k8s}}}\n\
         spec:\n  replicas: 2\n  selector: {{matchLabels: {{app: {k8s}}}}}\n  template:\n\
         \x20   metadata: {{labels: {{app: {k8s}}}}}\n    spec:\n\
         \x20     imagePullSecrets: [{{name: regcred}}]\n\
         \x20     containers: [{{name: web, image: {reference2}}}]\n"
    );
    let out = apply(&p.a, "k8s.yaml", &manifest);
    out.assert_success();
    assert!(engine.has_image(&reference2));
    let plan = p.a.cli(&[
        "plan",
        "-f",
        p.a.write_manifest("k8s.yaml", &manifest).to_str().unwrap(),
        "-o",
        "json",
    ]);

    // The password is nowhere: API reads, CLI output, events, metrics,
    // logs, and the data on disk (sealed with the cluster key).
    let b64 = base64(format!("skein:{password}").as_bytes());
    let leaks = |what: &str, text: &str| {
        assert!(
            !text.contains(&password) && !text.contains(&b64),
            "the password appears in {what}"
        );
    };
    leaks("apply output", &format!("{}{}", out.stdout, out.stderr));
    leaks("plan output", &format!("{}{}", plan.stdout, plan.stderr));
    for agent in [&p.a, &p.b] {
        for path in [
            "/v1/registries",
            "/v1/jobs",
            "/v1/allocs",
            "/v1/nodes",
            "/v1/images",
            "/v1/top",
            "/v1/status",
            "/v1/events?limit=1000",
            "/metrics",
        ] {
            let (_, body) = agent.http_get(path);
            leaks(path, &body);
        }
        for args in [
            &["registry", "ls", "-o", "json"][..],
            &["events", "--tail", "1000", "-o", "json"],
            &["job", "status", &k8s, "-o", "json"],
        ] {
            let o = agent.cli(args);
            leaks(&args.join(" "), &format!("{}{}", o.stdout, o.stderr));
        }
        leaks(
            "the agent log",
            &std::fs::read_to_string(agent.log_path()).unwrap_or_default(),
        );
        let mut files = Vec::new();
        walk(agent.data_dir(), &mut files);
        assert!(!files.is_empty());
        for f in files {
            let bytes = std::fs::read(&f).unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes);
            leaks(&f.display().to_string(), &text);
        }
    }
}

#[test]
fn a_peer_copies_an_image_no_registry_has_and_rejects_a_corrupted_copy() {
    let engine = Engine::start();
    let img = unique_image("mesh", 8);
    // The first copy node a serves is corrupted on the way (test hook).
    let p = pair(&engine, &[("SKEIN_TEST_CORRUPT_IMAGE_UPLOADS", "1")]);
    assert!(!engine.has_image(&img.reference));

    let job = unique_name("copied");
    let out = apply(
        &p.a,
        "copied.yaml",
        &format!(
            "name: {job}\nimage: {}\nconstraints: {{node: b}}\npull: if-not-present\n",
            img.reference
        ),
    );
    out.assert_success();
    assert_eq!(allocs(&p.a, &job)[0]["node_name"], "b");
    assert_eq!(
        engine.image_id(&img.reference).as_deref(),
        Some(img.id.as_str())
    );

    let rejected = events(&p.a, "image_pull_failed");
    assert!(
        rejected.iter().any(|e| e["node"] == "b"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("rejected") && m.contains("verification"))),
        "the corrupted copy was rejected: {rejected:#?}"
    );
    let copied = events(&p.a, "image_pulled");
    assert!(
        copied.iter().any(|e| e["node"] == "b"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("from node a"))),
        "{copied:#?}"
    );
    let ok = r#"skein_image_pulls_total{source="peer",result="ok"}"#;
    assert_eq!(metric(&p.b, ok), Some(1.0));

    // `image ls` lists both holders.
    let ls = poll_until("image ls shows both nodes", WAIT, || {
        let ls = p.a.cli_json(&["image", "ls"]);
        let entry = ls
            .as_array()?
            .iter()
            .find(|i| i["id"] == img.id.as_str())?
            .clone();
        (entry["nodes"] == serde_json::json!(["a", "b"])).then_some(entry)
    });
    assert!(ls["tags"].to_string().contains(&img.reference), "{ls}");

    // `image push`: a local build sent to b, followed to the end.
    let img2 = unique_image("push", 4);
    let out =
        p.a.cli_timeout(WAIT, &["image", "push", &img2.reference, "--to", "b"]);
    out.assert_success();
    assert!(out.stdout.contains("done"), "{}", out.stdout);
    assert_eq!(
        engine.image_id(&img2.reference).as_deref(),
        Some(img2.id.as_str())
    );
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else {
            out.push(p);
        }
    }
}
